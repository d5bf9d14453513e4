"""Join tokens: single-use, short-lived invitations for new hall machines.

``examnode invite`` (on the node that holds the centre's signing key) prints
a token; ``examnode join`` on the new machine proves it holds the token by
an HMAC over its new public key (the secret never crosses the network),
receives its certificate from the inviter, and checks that certificate
against the authority fingerprint carried in the token. Tokens live only on
the inviting node (``invites.json``), never in replicated records.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from cryptography import x509

from node.errors import Conflict, ExamnodeError, ValidationError
from node.trust.certs import der, to_pem
from node.trust.material import TrustMaterial, certify_joiner

INVITES_FILE = "invites.json"
TOKEN_PREFIX = "exn1."  # noqa: S105 - a format marker, not a secret
MAC_CONTEXT = b"examnode-join-v1"
MAX_EXPIRY = 7 * 24 * 3600


class TokenRefused(ExamnodeError):
    status = 403
    code = "token_refused"


@dataclass(frozen=True)
class Invite:
    """The contents of a join token."""

    token_id: bytes
    secret: bytes
    center: str
    api: str  # host:port of the inviter's API, where the joiner redeems the token
    authority_sha256: bytes
    expires: int

    def encode(self) -> str:
        """Return the printable token."""
        raw = msgpack.packb([1, self.token_id, self.secret, self.center, self.api,
                             self.authority_sha256, self.expires], use_bin_type=True)
        return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_token(text: str) -> Invite:
    """Parse a printed token, refusing anything malformed."""
    text = text.strip()
    if not text.startswith(TOKEN_PREFIX) or len(text) > 1024:
        raise ValidationError("not an examnode join token")
    try:
        body = text[len(TOKEN_PREFIX):]
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        v, tid, secret, center, api, fp, expires = msgpack.unpackb(raw, raw=False)
        ok = (v == 1 and isinstance(tid, bytes) and len(tid) == 16 and isinstance(secret, bytes)
              and len(secret) == 32 and isinstance(center, str) and isinstance(api, str)
              and isinstance(fp, bytes) and len(fp) == 32 and isinstance(expires, int))
    except (ValueError, TypeError, binascii.Error, msgpack.UnpackException) as e:
        raise ValidationError("not an examnode join token (damaged)") from e
    if not ok:
        raise ValidationError("not an examnode join token (wrong fields)")
    return Invite(tid, secret, center, api, fp, expires)


def join_mac(secret: bytes, token_id: bytes, public_key: bytes) -> bytes:
    """Return the proof that a joiner holds the token, bound to its public key."""
    return hmac.new(secret, MAC_CONTEXT + token_id + public_key, hashlib.sha256).digest()


def authority_fingerprint(root: x509.Certificate) -> bytes:
    """Return the SHA-256 of the authority certificate (pinned in tokens)."""
    return hashlib.sha256(der(root)).digest()


@contextmanager
def _invites(data_dir: Path) -> Iterator[dict[str, Any]]:
    """Open the invites file locked; write it back when the block ends."""
    path = data_dir / INVITES_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        text = f.read()
        invites: dict[str, Any] = json.loads(text) if text.strip() else {}
        yield invites
        f.seek(0)
        f.truncate()
        json.dump(invites, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def create_invite(data_dir: Path, trust: TrustMaterial, api: str, expires_in: int,
                  now: float | None = None) -> Invite:
    """Record a new single-use invitation and return it."""
    if trust.signer is None:
        raise ValidationError("this node holds no signing key: invite from the centre's "
                              "first node (the one made by 'init' or 'init --from')")
    if not 0 < expires_in <= MAX_EXPIRY:
        raise ValidationError(f"expiry must be between 1 s and {MAX_EXPIRY // 86400} days")
    now = time.time() if now is None else now
    invite = Invite(secrets.token_bytes(16), secrets.token_bytes(32), trust.me.center, api,
                    authority_fingerprint(trust.root), int(now + expires_in))
    with _invites(data_dir) as invites:
        invites[invite.token_id.hex()] = {
            "mac_key": invite.secret.hex(), "expires": invite.expires, "center": invite.center,
            "created": int(now), "used_by": None, "used_at": None}
    return invite


def redeem_invite(data_dir: Path, trust: TrustMaterial, token_id: bytes, public_key: bytes,
                  mac: bytes, now: float | None = None) -> list[x509.Certificate]:
    """Check a join request and return the new node's certificate chain (single use)."""
    now = time.time() if now is None else now
    with _invites(data_dir) as invites:
        entry = invites.get(token_id.hex())
        if entry is None:
            raise TokenRefused("unknown join token")
        expected = join_mac(bytes.fromhex(entry["mac_key"]), token_id, public_key)
        if not hmac.compare_digest(expected, mac):
            raise TokenRefused("join token proof does not match")
        if entry["used_by"] is not None:
            raise Conflict("this join token was already used")
        if now > entry["expires"]:
            raise TokenRefused("this join token has expired")
        chain = certify_joiner(trust, public_key)
        entry["used_by"] = public_key.hex()
        entry["used_at"] = int(now)
    return chain


def join_response(trust: TrustMaterial, chain: list[x509.Certificate],
                  peers: list[str]) -> dict[str, Any]:
    """Return what the joiner needs: its chain, the authority, where its peers are."""
    return {"chain": [to_pem(c).decode() for c in chain],
            "authority": to_pem(trust.root).decode(), "center": trust.me.center,
            "peers": peers}
