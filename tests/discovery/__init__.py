"""Tests of node.discovery: hint parsing in-process, mDNS in a private network namespace."""
