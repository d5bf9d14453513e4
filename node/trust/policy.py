"""Who may sign what: the store's trust policy from certificates and revocations.

A signer is accepted when a certificate chain for its key, verified against
the authority, is in the store's signer registry, its centre and role allow
the delta's scope, and no revocation record names it at an earlier time than
the delta (deltas made before a revocation stay valid).
"""

from __future__ import annotations

import logging
from typing import Any

import lmdb
import msgpack
from cryptography import x509

from node.store import Store
from node.store.hlc import hlc_millis
from node.trust.certs import CertificateError, NodeCert, verify_chain

log = logging.getLogger(__name__)

REVOCATIONS = "revocations"
NODES = "nodes"


def pack_signer(cert: NodeCert) -> bytes:
    """Encode a verified node certificate for the signer registry."""
    out: bytes = msgpack.packb({"chain": list(cert.chain), "center": cert.center,
                                "role": cert.role, "direct": cert.direct,
                                "node_id": cert.node_id}, use_bin_type=True)
    return out


class TrustPolicy:
    """The store's trust policy (installed with ``Store.set_trust_policy``)."""

    def __init__(self, store: Store, root: x509.Certificate) -> None:
        self.store = store
        self.root = root
        self._cache: dict[bytes, dict[str, Any]] = {}
        self._by_id: dict[str, bytes] = {}
        self._certs: dict[str, NodeCert] = {}

    def verify(self, chain: list[bytes] | tuple[bytes, ...]) -> NodeCert:
        """Verify a certificate chain against the authority (raises CertificateError)."""
        return verify_chain(chain, self.root)

    async def admit(self, chains: list[list[bytes]]) -> list[NodeCert]:
        """Verify chains and add the valid ones to the signer registry."""
        good: list[NodeCert] = []
        for chain in chains:
            try:
                good.append(self.verify(chain))
            except CertificateError as e:
                log.warning("certificate refused: %s", e.detail)
        new = [c for c in good if c.public_key not in self._cache
               and self.store.signer(c.public_key) is None]
        if new:
            await self.store.add_signers([(c.public_key, pack_signer(c)) for c in new])
        return good

    def admit_sync(self, chains: list[list[bytes]]) -> list[NodeCert]:
        """``admit`` for code outside an event loop."""
        good = []
        for chain in chains:
            try:
                good.append(self.verify(chain))
            except CertificateError as e:
                log.warning("certificate refused: %s", e.detail)
        if good:
            self.store.add_signers_sync([(c.public_key, pack_signer(c)) for c in good])
        return good

    def _info(self, txn: lmdb.Transaction, origin: bytes) -> dict[str, Any] | None:
        info = self._cache.get(origin)
        if info is None:
            blob = self.store.signer(origin, txn)
            if blob is None:
                return None
            info = msgpack.unpackb(blob, raw=False)
            self._cache[origin] = info
        return info

    def revoked_at(self, txn: lmdb.Transaction, node_id: str) -> int | None:
        """Return the wall-clock milliseconds (HLC) a node was revoked at, or None."""
        view = self.store.view_in(txn, f"{REVOCATIONS}/{node_id}")
        if view is None or view.deleted:
            return None
        at = view.data.get("revoked_at_ms")
        # A malformed revocation still revokes, from the beginning: fail safe.
        return int(at) if isinstance(at, int | float) and at >= 0 else 0

    def __call__(self, txn: lmdb.Transaction, origin: bytes, scope: str, hlc: int) -> str | None:
        info = self._info(txn, origin)
        if info is None:
            return "unknown_signer"
        role, center = info["role"], info["center"]
        if not (role == "hq" or (scope == "global" and info["direct"]) or scope == center):
            return "scope_not_allowed"
        at = self.revoked_at(txn, info["node_id"])
        if at is not None and hlc_millis(hlc) >= at:
            return "revoked"
        return None

    def public_key_of(self, node_id: str) -> bytes | None:
        """Return the public key of a known node id (for token ``kid``), or None."""
        key = self._by_id.get(node_id)
        if key is None:
            for pk, blob in self.store.signers().items():
                self._by_id[msgpack.unpackb(blob, raw=False)["node_id"]] = pk
            key = self._by_id.get(node_id)
        return key

    def cert_of(self, node_id: str) -> NodeCert | None:
        """Return a known node's verified certificate by node id (cached)."""
        cert = self._certs.get(node_id)
        if cert is None:
            key = self.public_key_of(node_id)
            blob = self.store.signer(key) if key is not None else None
            if blob is None:
                return None
            cert = self.verify(msgpack.unpackb(blob, raw=False)["chain"])
            self._certs[node_id] = cert
        return cert

    def is_revoked(self, node_id: str) -> bool:
        """Return True when a revocation record names ``node_id``."""
        return self.store.get(f"{REVOCATIONS}/{node_id}") is not None

    def install(self, may_write: Any) -> None:
        """Make this the store's trust policy, with the revocation hook."""
        self.store.set_trust_policy(self, may_write)
        self.store.add_hook(f"{REVOCATIONS}/", self.on_revocation)

    def on_revocation(self, ctx: Any, key: str, view: dict[str, Any]) -> None:
        """Withdraw what the revoked node made after its revocation (writer thread)."""
        from node.store.rollback import withdraw_after

        public = view.get("public_key")
        at = view.get("revoked_at_ms")
        if isinstance(public, str) and len(public) == 64 and isinstance(at, int | float):
            withdraw_after(ctx, bytes.fromhex(public), int(at))

    def node_by_id(self, node_id: str) -> NodeCert | None:
        """Return a known node's certificate by node id."""
        for _pk, blob in self.store.signers().items():
            info = msgpack.unpackb(blob, raw=False)
            if info["node_id"] == node_id:
                return self.verify(info["chain"])
        return None

    def chain_of(self, origin: bytes) -> list[bytes] | None:
        """Return the certificate chain of a known signer, for sending to peers."""
        blob = self.store.signer(origin)
        if blob is None:
            return None
        chain: list[bytes] = msgpack.unpackb(blob, raw=False)["chain"]
        return chain
