"""One error hierarchy for the whole node.

Every domain error carries a stable machine-readable ``code`` and the HTTP
status the API maps it to (CONVENTIONS.md, guideline 5). The store and the
services raise these; only ``node.api.errors`` turns them into responses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pydantic import ValidationError as PydanticError


class ExamnodeError(Exception):
    """Base of every error the node raises on purpose."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "error"

    def __init__(self, detail: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields or {}

    def body(self) -> dict[str, Any]:
        """Return the DRF-compatible JSON body for this error."""
        out: dict[str, Any] = {"detail": self.detail, "code": self.code}
        out.update(self.fields)
        return out


class ValidationError(ExamnodeError):
    status = 400
    code = "invalid"


class NotFound(ExamnodeError):
    status = 404
    code = "not_found"


class Conflict(ExamnodeError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ExamnodeError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(ExamnodeError):
    status = 415
    code = "unsupported_media_type"


class Unavailable(ExamnodeError):
    status = 503
    code = "unavailable"


class ConfigError(ExamnodeError):
    code = "config"


class StoreError(ExamnodeError):
    """The store refused an operation (a bad key, a scope mismatch...)."""

    code = "store"


class StoreClosed(StoreError):
    status = 503
    code = "store_closed"


class ScopeNotWritable(StoreError):
    """This node's certificate does not allow it to sign changes in that scope."""

    status = 403
    code = "scope_not_writable"


class NodeRecovering(StoreError):
    """A node restored from backup may not write until peers gave back its own deltas."""

    status = 503
    code = "recovering"


class DeltaRejected(StoreError):
    """A delta from elsewhere failed verification; nothing was applied."""

    code = "delta_rejected"

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


def field_errors(e: PydanticError) -> dict[str, list[str]]:
    """Return pydantic errors as DRF's ``{"field": ["message"]}``."""
    out: dict[str, list[str]] = {}
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "non_field_errors"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "Unknown field."
        elif err["type"] == "missing":
            msg = "This field is required."
        out.setdefault(loc, []).append(msg)
    return out
