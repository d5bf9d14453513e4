"""Replication: peer sessions over mutually authenticated TLS, and bundles (DESIGN.md s7)."""
