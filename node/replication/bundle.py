"""Bundles: the signed deltas of a node written to a file (USB and LAN are one).

A bundle is a header followed by the same messages a peer session sends
(``certs`` then ``chain`` messages, see ``wire.py``), so importing applies
exactly the verification of the network path. Centre data is personal data:
a bundle holding any centre scope is encrypted to its recipient node with
libsodium's sealed box (X25519 from the recipient's Ed25519 key), unless
the operator explicitly asks for a clear file.

    header  {kind, source, center, created, scopes, recipient, encrypted}
    body    msgpack stream: {t: certs, chains}, {t: chain, o, s, prev, d}, ..., {t: end, n}
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import nacl.bindings
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from node.errors import ExamnodeError
from node.identity import Identity
from node.store import Store
from node.store.delta import GENESIS, Delta, decode, encode
from node.store.hlc import hlc_from_millis
from node.trust.certs import NodeCert
from node.trust.policy import TrustPolicy

log = logging.getLogger(__name__)

KIND = "examnode-bundle-v1"
CHUNK = 1000
MAX_BUNDLE = 2 * 1024**3


class BundleError(ExamnodeError):
    code = "bad_bundle"


@dataclass
class ImportReport:
    """What importing a bundle did."""

    source: str = ""
    applied: int = 0
    duplicate: int = 0
    held: int = 0
    forked: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    skipped_scopes: set[str] = field(default_factory=set)

    def refuse(self, reason: str, n: int = 1) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + n


def _recipient_box(public_key: bytes) -> SealedBox[PublicKey]:
    return SealedBox(PublicKey(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(public_key)))


def _own_box(identity: Identity) -> SealedBox[PrivateKey]:
    sk64 = identity.signing_key._signing_key
    return SealedBox(PrivateKey(nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(sk64)))


def _first_at_or_after(store: Store, origin: bytes, scope: str, since_hlc: int) -> int:
    """Return the seq before the first delta of a chain with hlc >= ``since_hlc``."""
    before = 0
    for d in store.deltas(origin, scope):
        if d.hlc >= since_hlc:
            return before
        before = d.seq
    return before


def write_bundle(store: Store, policy: TrustPolicy, me: NodeCert, *, scopes: set[str] | None,
                 since: float | None, recipient: NodeCert | None, clear: bool) -> bytes:
    """Return a bundle of this node's deltas (all chains of ``scopes``, or all)."""
    vv = store.version_vector()
    chains = sorted(c for c in vv if scopes is None or c[1] in scopes)
    held_scopes = sorted({c[1] for c in chains})
    personal = any(s != "global" for s in held_scopes)
    if personal and recipient is None and not clear:
        raise BundleError("this bundle holds centre data (personal data): name its recipient "
                          "with --to NODE_ID, or pass --unencrypted to write it in clear")
    body = io.BytesIO()
    count = 0
    certs = [policy.chain_of(o) for o in {c[0] for c in chains}]
    body.write(msgpack.packb({"t": "certs", "chains": [c for c in certs if c]},
                             use_bin_type=True))
    since_hlc = hlc_from_millis(int(since * 1000)) if since is not None else None
    for origin, scope in chains:
        after = 0 if since_hlc is None else _first_at_or_after(store, origin, scope, since_hlc)
        prev = GENESIS
        if after:
            prev = next(store.deltas(origin, scope, after - 1, 1)).hash
        while True:
            items = store.chain_items(origin, scope, after, CHUNK)
            if not items:
                break
            body.write(msgpack.packb({"t": "chain", "o": origin, "s": scope, "prev": prev,
                                      "d": items}, use_bin_type=True))
            count += len(items)
            after = items[-1][0]
            prev = next(store.deltas(origin, scope, after - 1, 1)).hash
    body.write(msgpack.packb({"t": "end", "n": count}, use_bin_type=True))
    payload = body.getvalue()
    header = {"kind": KIND, "source": me.node_id, "center": me.center,
              "created": int(time.time()), "scopes": held_scopes, "deltas": count,
              "recipient": recipient.node_id if recipient else None,
              "encrypted": recipient is not None}
    if recipient is not None:
        payload = _recipient_box(recipient.public_key).encrypt(payload)
    return bytes(msgpack.packb(header, use_bin_type=True)) + payload


def read_header(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a bundle into its header and its (possibly encrypted) body."""
    if len(data) > MAX_BUNDLE:
        raise BundleError("bundle too large")
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(data) + 1,
                                max_bin_len=1 << 20, max_str_len=1 << 16)
    unpacker.feed(data)
    try:
        header = unpacker.unpack()
    except Exception as e:  # garbage in front: one clear error
        raise BundleError("not an examnode bundle") from e
    if not isinstance(header, dict) or header.get("kind") != KIND:
        raise BundleError("not an examnode bundle")
    return header, data[unpacker.tell():]


def _messages(body: bytes) -> Iterator[dict[str, Any]]:
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(body) + 1,
                                max_bin_len=64 << 20, max_array_len=1 << 20)
    unpacker.feed(body)
    ended = False
    try:
        for msg in unpacker:
            if not isinstance(msg, dict):
                raise BundleError("bundle body holds a non-message")
            if msg.get("t") == "end":
                ended = True
                break
            yield msg
    except (ValueError, msgpack.UnpackException) as e:
        raise BundleError(f"bundle body is damaged: {type(e).__name__}") from e
    if not ended:
        raise BundleError("bundle is truncated (no end marker)")


def import_bundle(store: Store, policy: TrustPolicy, identity: Identity, me: NodeCert,
                  data: bytes) -> ImportReport:
    """Apply a bundle with the same checks as a peer session; idempotent."""
    header, body = read_header(data)
    report = ImportReport(source=str(header.get("source", "")))
    if header.get("encrypted"):
        if header.get("recipient") != me.node_id:
            raise BundleError(f"this bundle is encrypted for node {header.get('recipient')}, "
                              f"not for this node ({me.node_id})")
        try:
            body = _own_box(identity).decrypt(body)
        except CryptoError as e:
            raise BundleError("bundle does not decrypt with this node's key") from e
    for msg in _messages(body):
        kind = msg.get("t")
        if kind == "certs" and isinstance(msg.get("chains"), list):
            policy.admit_sync([c for c in msg["chains"] if isinstance(c, list)])
        elif kind == "chain":
            _import_chain(store, me, msg, report)
        else:
            raise BundleError(f"unexpected message {kind!r} in bundle")
    return report


def _import_chain(store: Store, me: NodeCert, msg: dict[str, Any], report: ImportReport) -> None:
    origin, scope, items, prev = msg.get("o"), msg.get("s"), msg.get("d"), msg.get("prev")
    if not (isinstance(origin, bytes) and isinstance(scope, str) and isinstance(items, list)
            and isinstance(prev, bytes)):
        raise BundleError("malformed chain in bundle")
    if not (me.role == "hq" or scope in ("global", me.center)):
        report.skipped_scopes.add(scope)  # isolation holds for files too
        return
    result = store.apply_chain_sync(origin, scope, items)
    report.applied += result.applied
    report.duplicate += result.duplicate
    report.forked += result.forked
    if result.reason == "gap":
        # A partial bundle (--since): hold what we cannot link yet, like the network does.
        rest = [i for i in items if isinstance(i, list) and i and isinstance(i[0], int)
                and i[0] > result.head]
        _hold(store, origin, scope, prev, rest, report)
    elif result.reason:
        report.refuse(result.reason)


def _hold(store: Store, origin: bytes, scope: str, prev: bytes, items: list[Any],
          report: ImportReport) -> None:
    envelopes = []
    for seq, key, update, user, hlc, sig in items:
        d = Delta(origin, scope, seq, prev, key, update, user, hlc, sig)
        envelopes.append(encode(d))
        prev = decode(envelopes[-1]).hash
    for res in store.apply_remote_sync(envelopes):
        if res.status == "held":
            report.held += 1
        elif res.status == "applied":
            report.applied += 1 + res.released
        elif res.status == "duplicate":
            report.duplicate += 1
        else:
            report.refuse(res.reason or res.status)
