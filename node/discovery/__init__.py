"""Peer discovery by mDNS (DESIGN.md section 7): hints about peers, never trust."""

from node.discovery.hints import SERVICE_TYPE, MalformedHint, PeerHint, hint_from_info
from node.discovery.mdns import RESOLVE_TIMEOUT, Discovery

__all__ = ["RESOLVE_TIMEOUT", "SERVICE_TYPE", "Discovery", "MalformedHint", "PeerHint",
           "hint_from_info"]
