"""Who is asking: bearer tokens to principals, and per-client rate limits."""

from __future__ import annotations

import math
import time
from collections import deque

from aiohttp import web

from node.api.keys import NODE
from node.errors import ExamnodeError, Unavailable
from node.services.auth.permissions import NotAuthenticated, Principal
from node.services.auth.signin import Client

PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


class Throttled(ExamnodeError):
    status = 429
    code = "throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Request was throttled. Expected available in {retry_after} "
                         "seconds.")
        self.retry_after = retry_after


def principal(request: web.Request) -> Principal:
    """Return the authenticated principal of ``request`` (401 without a valid token)."""
    cached: Principal | None = request.get(PRINCIPAL_KEY)
    if cached is not None:
        return cached
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("Authentication credentials were not provided.")
    auth = request.app[NODE].auth
    if auth is None:
        raise Unavailable("accounts are not available on this node")
    who: Principal = auth.signin.authenticate(token.strip())
    request[PRINCIPAL_KEY] = who
    return who


def client(request: web.Request) -> Client:
    """Return where a request comes from (address and user agent)."""
    return Client(request.remote or "", request.headers.get("User-Agent", ""))


class RateLimiter:
    """Sliding-window request limits per key, in memory (per node)."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str, per_minute: int, now: float | None = None) -> None:
        """Count one request; raise Throttled (429) over the limit."""
        now = time.monotonic() if now is None else now
        window = self._hits.setdefault(key, deque())
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= per_minute:
            raise Throttled(max(1, math.ceil(window[0] + 60 - now)))
        window.append(now)
        if len(self._hits) > 100_000:  # bounded memory under a flood of addresses
            self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - 60}


LIMITER: web.AppKey[RateLimiter] = web.AppKey("limiter", RateLimiter)


def limit_auth(request: web.Request) -> None:
    """Apply the sign-in rate limit of the client address."""
    per_minute = request.app[NODE].config.auth.auth_rate
    request.app[LIMITER].hit(f"auth:{request.remote}", per_minute)


def limit_write(request: web.Request, who: Principal) -> None:
    """Apply the write rate limit of a signed-in user."""
    per_minute = request.app[NODE].config.auth.write_rate
    request.app[LIMITER].hit(f"write:{who.username}", per_minute)
