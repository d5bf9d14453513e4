"""TLS 1.3 contexts pinned to the deployment's authority and this node's key.

Both ends present their node certificate and require the other's, verified
against the authority root; the certificate's key is the node key, so the
channel is mutually authenticated with the same keys that sign deltas.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

from node.identity import Identity
from node.trust.certs import private_key_pem, to_pem
from node.trust.material import TrustMaterial


def _context(purpose: ssl._SSLMethod, identity: Identity, trust: TrustMaterial,
             data_dir: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=to_pem(trust.root).decode())
    # ssl wants files: write the key to a private temporary file and remove it at once.
    fd, key_path = tempfile.mkstemp(prefix=".tls-", dir=data_dir)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_key_pem(identity))
        chain_path = data_dir / "node.crt"
        ctx.load_cert_chain(str(chain_path), key_path)
    finally:
        os.unlink(key_path)
    return ctx


def server_context(identity: Identity, trust: TrustMaterial, data_dir: Path) -> ssl.SSLContext:
    """Return the context of the peer listener (client certificates required)."""
    return _context(ssl.PROTOCOL_TLS_SERVER, identity, trust, data_dir)


def client_context(identity: Identity, trust: TrustMaterial, data_dir: Path) -> ssl.SSLContext:
    """Return the context for dialling peers (their certificate is required)."""
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, identity, trust, data_dir)
    ctx.check_hostname = False  # peers are identified by certificate, not by name
    return ctx
