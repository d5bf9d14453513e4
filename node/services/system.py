"""The node itself: who it is and how it is doing (health and status)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from node import __version__
from node.config import NodeConfig
from node.identity import Identity
from node.store import Store
from node.trust.material import TrustMaterial


@dataclass
class NodeContext:
    """What every service needs to know about the node it runs on."""

    data_dir: Path
    config: NodeConfig
    identity: Identity
    store: Store
    trust: TrustMaterial | None = None
    started: float = field(default_factory=time.monotonic)
    replicator: Any = None  # node.replication.manager.Replicator once started

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    @property
    def center(self) -> str:
        return self.config.node.center


class Health(BaseModel):
    status: str = Field(description="'ok' while the node serves and its store is open.")
    node_id: str = Field(description="Fingerprint of the node's Ed25519 public key.")
    center: str = Field(description="Code of the centre this node belongs to.")
    name: str = Field(description="Human name of the machine.")
    role: str = Field(description="'node' or 'hq'.")
    version: str = Field(description="Examnode version.")
    uptime_seconds: float = Field(description="Seconds since the node started.")


def health(ctx: NodeContext) -> Health:
    """Return the node's health summary."""
    try:
        ctx.store.env  # noqa: B018 - raises when the store is closed
        status = "ok"
    except Exception:
        status = "unavailable"
    return Health(
        status=status, node_id=ctx.node_id, center=ctx.center, name=ctx.config.node.name,
        role=ctx.config.node.role, version=__version__,
        uptime_seconds=round(time.monotonic() - ctx.started, 3),
    )
