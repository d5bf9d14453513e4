"""Access and refresh tokens: JWTs signed with the issuing node's Ed25519 key.

``kid`` is the issuing node's id; every node verifies against the replicated
roster of node certificates (the store's signer registry), so a token from
any node of the deployment works on every node, and a revoked node's tokens
stop working. Only EdDSA is accepted: ``alg: none`` and HMAC confusion are
refused by the algorithm list. Verified tokens are cached briefly, since a
verification costs ~80 µs.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from node.identity import Identity
from node.services.auth.permissions import NotAuthenticated

ALGORITHMS = ["EdDSA"]
LEEWAY = 5
CACHE_SIZE = 10_000


class TokenInvalid(NotAuthenticated):
    code = "token_not_valid"


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    username: str
    role: str
    center: str | None
    session_id: str
    kind: str  # "access" or "refresh"
    issuer: str  # node id
    expires: int
    generation: int = 0  # refresh tokens: rotation counter


class TokenService:
    """Issue and verify tokens for one node."""

    def __init__(self, identity: Identity, node_id: str, key_of: Any, revoked: Any) -> None:
        """``key_of(node_id) -> public key bytes | None``; ``revoked(node_id) -> bool``."""
        self._key = Ed25519PrivateKey.from_private_bytes(bytes(identity.signing_key))
        self.node_id = node_id
        self._key_of = key_of
        self._revoked = revoked
        self._cache: OrderedDict[str, Claims] = OrderedDict()

    def issue(self, *, username: str, role: str, center: str | None, session_id: str,
              kind: str, ttl: int, generation: int = 0, now: float | None = None) -> str:
        """Return a signed token."""
        now = int(time.time() if now is None else now)
        payload = {"sub": username, "role": role, "center": center, "sid": session_id,
                   "typ": kind, "iss": self.node_id, "iat": now, "nbf": now,
                   "exp": now + ttl, "jti": uuid.uuid4().hex}
        if kind == "refresh":
            payload["gen"] = generation
        return jwt.encode(payload, self._key, algorithm="EdDSA",
                          headers={"kid": self.node_id})

    def verify(self, token: str, kind: str) -> Claims:
        """Return the claims of a valid token of ``kind``; raise TokenInvalid otherwise."""
        now = time.time()
        cached = self._cache.get(token)
        if cached is None:
            cached = self._verify(token)
            self._cache[token] = cached
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        if cached.expires + LEEWAY < now:
            self._cache.pop(token, None)
            raise TokenInvalid("Token is expired.")
        if cached.kind != kind:
            raise TokenInvalid(f"Token has wrong type (expected {kind}).")
        if self._revoked(cached.issuer):
            raise TokenInvalid("Token was issued by a revoked node.")
        return cached

    def _verify(self, token: str) -> Claims:
        if not isinstance(token, str) or len(token) > 4096:
            raise TokenInvalid("Token is malformed.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise TokenInvalid("Token is malformed.") from e
        kid = header.get("kid")
        if header.get("alg") not in ALGORITHMS or not isinstance(kid, str):
            raise TokenInvalid("Token algorithm or key id is not accepted.")
        raw = self._key_of(kid)
        if raw is None:
            raise TokenInvalid("Token was signed by an unknown node.")
        try:
            claims = jwt.decode(token, Ed25519PublicKey.from_public_bytes(raw),
                                algorithms=ALGORITHMS, leeway=LEEWAY,
                                options={"require": ["exp", "iat", "nbf", "sub", "sid", "typ"]})
        except jwt.ExpiredSignatureError as e:
            raise TokenInvalid("Token is expired.") from e
        except jwt.ImmatureSignatureError as e:
            raise TokenInvalid("Token is not yet valid.") from e
        except jwt.PyJWTError as e:
            raise TokenInvalid("Token is invalid.") from e
        if claims.get("iss") != kid:
            raise TokenInvalid("Token issuer does not match its key id.")
        try:
            return Claims(str(claims["sub"]), str(claims["role"]), claims.get("center"),
                          str(claims["sid"]), str(claims["typ"]), kid, int(claims["exp"]),
                          int(claims.get("gen", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise TokenInvalid("Token claims are malformed.") from e
