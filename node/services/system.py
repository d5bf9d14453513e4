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
    policy: Any = None  # node.trust.policy.TrustPolicy when the node has trust files
    auth: Any = None  # node.services.auth.AuthServices
    candidates: Any = None  # node.services.candidates.CandidateServices

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


def system_status(ctx: NodeContext) -> dict[str, Any]:
    """Return node, peers and lag, store size, version, uptime and warnings."""
    import shutil

    stats = ctx.store.stats()
    rep = ctx.replicator.status() if ctx.replicator is not None else None
    peers = rep["peers"] if rep else []
    warnings = []
    limit = ctx.config.auth.clock_skew_warning_ms
    for p in peers:
        offset = p.get("clock_offset_ms")
        if offset is not None and abs(offset) > limit:
            warnings.append(f"clock of peer {p['node_id']} differs by {offset:.0f} ms")
    if stats["quarantine_entries"]:
        warnings.append(f"{stats['quarantine_entries']} quarantined deltas (forks or scope "
                        "conflicts) need a person to look at them")
    if stats["pending_entries"]:
        warnings.append(f"{stats['pending_entries']} deltas are held back waiting for their "
                        "predecessors")
    disk = shutil.disk_usage(ctx.data_dir)
    if disk.free < ctx.config.auth.disk_free_warning_mb * 1024 * 1024:
        warnings.append(f"only {disk.free // (1024 * 1024)} MiB of disk left")
    if stats["used_bytes"] > 0.8 * stats["map_size"]:
        warnings.append("the store is above 80% of store.map_size_mb")
    if ctx.store.restored:
        warnings.append("restored from backup: waiting for a peer before accepting writes")
    return {
        "node": health(ctx).model_dump(),
        "peers": peers,
        "store": {"records": stats["views_entries"], "deltas": stats["log_entries"],
                  "used_bytes": stats["used_bytes"], "map_size": stats["map_size"],
                  "pending": stats["pending_entries"],
                  "quarantined": stats["quarantine_entries"]},
        "disk": {"free_bytes": disk.free, "total_bytes": disk.total},
        "warnings": warnings,
    }
