"""Plain result types the store hands back to its callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One delta stored on this node, in local arrival order."""

    feed_no: int
    key: str
    scope: str
    origin: bytes
    seq: int
    hlc: int


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """What a local change did."""

    key: str
    scope: str
    changed: bool
    seq: int | None
    hlc: int | None
    view: dict[str, Any]
    value: Any = None


class ApplyStatus(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    HELD = "held"
    FORKED = "forked"
    REJECTED = "rejected"


@dataclass(slots=True)
class ChainResult:
    """What applying a run of one chain's deltas did."""

    applied: int = 0
    duplicate: int = 0
    forked: int = 0
    rejected: int = 0
    reason: str = ""
    head: int = 0  # the chain's last contiguous seq on this node afterwards
    conflicts: list[str] = field(default_factory=list)

    def refuse(self, reason: str) -> None:
        self.rejected += 1
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What applying one delta from elsewhere did."""

    status: ApplyStatus
    reason: str = ""
    released: int = 0  # held-back deltas that this one let through
    conflicts: list[str] = field(default_factory=list)
