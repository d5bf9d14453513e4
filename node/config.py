"""Node configuration: ``node.toml`` read into one pydantic model per section.

Every field has a default and a description (CONVENTIONS.md, guideline 7).
Environment variables ``NODE_<SECTION>_<FIELD>`` override the file, e.g.
``NODE_HTTP_PORT=8701``. ``node.toml.example`` is generated from these models
(``examnode config-example``) and a test fails when it misses a field.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from node.errors import ConfigError

CONFIG_FILE = "node.toml"
ENV_PREFIX = "NODE_"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NodeSection(Section):
    center: str = Field("DEMO", description="Code of the exam centre this node belongs to.",
                        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    name: str = Field("", description="Human name of this machine, shown to invigilators.",
                      max_length=100)
    role: str = Field("node", description="'node' for a hall machine, 'hq' for headquarters.",
                      pattern=r"^(node|hq)$")


class HttpSection(Section):
    host: str = Field("127.0.0.1", description="Address the API and pages listen on.")
    port: int = Field(8700, ge=1, le=65535, description="TCP port of the API and pages.")
    max_body_bytes: int = Field(
        12 * 1024 * 1024, ge=1024, description="Largest request body accepted, in bytes.")
    page_size: int = Field(50, ge=1, le=1000, description="Default page size of API lists.")
    max_page_size: int = Field(500, ge=1, le=10000, description="Largest ?page_size= allowed.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser.")
    access_log: bool = Field(True, description="Log one line per HTTP request.")
    shutdown_timeout: float = Field(
        10.0, ge=0, description="Seconds to let in-flight requests finish on shutdown.")

    @field_validator("host")
    @classmethod
    def _host_is_ip(cls, v: str) -> str:
        if v != "localhost":
            ipaddress.ip_address(v)
        return v


class DiscoverySection(Section):
    mdns: bool = Field(True, description="Announce and browse peers by mDNS.")
    mdns_interface: str = Field(
        "127.0.0.1",
        description="Interface address mDNS uses ('none' turns mDNS off). Loopback by default.")
    peers: list[str] = Field(
        default_factory=list, description="Static peer URLs, for networks without multicast.")

    @field_validator("mdns_interface")
    @classmethod
    def _iface(cls, v: str) -> str:
        if v != "none":
            ipaddress.ip_address(v)
        return v


class ReplicationSection(Section):
    port: int = Field(8701, ge=0, le=65535,
                      description="TCP port of the mutually authenticated TLS peer channel "
                                  "(on http.host); 0 picks a free port.")
    heartbeat: float = Field(2.0, gt=0, description="Seconds between pings on a peer session.")
    dead_after: float = Field(
        10.0, gt=0, description="Seconds of silence after which a peer session is dropped.")
    batch: int = Field(500, ge=1, le=10_000, description="Most deltas in one message.")
    window: int = Field(
        8, ge=1, le=1000, description="Most unacknowledged messages in flight per peer.")
    backoff_max: float = Field(
        10.0, gt=0, description="Longest wait, in seconds, between reconnection attempts.")


class AuthSection(Section):
    access_ttl: int = Field(300, ge=30, le=86400,
                            description="Lifetime of an access token, in seconds.")
    refresh_ttl: int = Field(
        43200, ge=300, le=30 * 86400,
        description="Lifetime of a sign-in session (refresh token), in seconds.")
    password_min_length: int = Field(10, ge=8, le=128,
                                     description="Shortest password accepted.")
    lockout_failures: int = Field(
        5, ge=1, le=1000, description="Failed sign-ins (per user or per address) that lock.")
    lockout_window: int = Field(
        900, ge=10, description="Seconds over which failed sign-ins are counted.")
    lockout_time: int = Field(900, ge=10, description="Seconds an account stays locked.")
    require_totp_for_admins: bool = Field(
        False, description="Require a TOTP second factor for admin and centre admin sign-in.")
    auth_rate: int = Field(
        30, ge=1, description="Sign-in/refresh requests per minute per client address.")
    write_rate: int = Field(
        600, ge=1, description="Write requests per minute per signed-in user.")
    clock_skew_warning_ms: int = Field(
        2000, ge=10, description="Peer clock offset beyond which system status warns.")
    disk_free_warning_mb: int = Field(
        1024, ge=1, description="Free disk space below which system status warns, in MiB.")


class CandidatesSection(Section):
    min_age: int = Field(0, ge=0, le=150,
                         description="Youngest eligible age on age_reference_date (0: none).")
    max_age: int = Field(0, ge=0, le=150,
                         description="Oldest eligible age on age_reference_date (0: none).")
    age_reference_date: str = Field(
        "", pattern=r"^(\d{4}-\d{2}-\d{2})?$",
        description="Date ages are computed on, YYYY-MM-DD (empty: today).")
    require_documents_verified: bool = Field(
        True, description="A candidate is eligible only once documents are verified.")
    require_fee_paid: bool = Field(True, description="A candidate is eligible only once the "
                                                     "fee is paid.")
    # Files replicate as one peer message each (at most 32 MiB): keep them well below.
    photo_max_mb: float = Field(5.0, gt=0, le=25, description="Largest photo upload, in MB "
                                                              "(at most 25).")
    document_max_mb: float = Field(10.0, gt=0, le=25,
                                   description="Largest document upload, in MB (at most 25).")
    import_max_mb: float = Field(50.0, gt=0, le=1000,
                                 description="Largest import file, in MB.")
    import_max_rows: int = Field(200_000, ge=1, description="Most rows in one import file.")


class StoreSection(Section):
    map_size_mb: int = Field(
        8192, ge=16, description="Largest size the LMDB file may grow to, in MiB (sparse).")
    max_batch: int = Field(
        1000, ge=1, le=100_000, description="Most writes committed together in one batch.")
    cache_size: int = Field(
        10_000, ge=1, description="Live CRDT documents kept in memory by the writer.")
    max_pending: int = Field(
        100_000, ge=0, description="Most held-back deltas (waiting for a predecessor).")


class LogSection(Section):
    level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.",
                       pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


class NodeConfig(Section):
    node: NodeSection = Field(default_factory=NodeSection, description="This node.")
    http: HttpSection = Field(default_factory=HttpSection, description="HTTP API and pages.")
    discovery: DiscoverySection = Field(
        default_factory=DiscoverySection, description="Finding peers.")
    replication: ReplicationSection = Field(
        default_factory=ReplicationSection, description="Peer sessions.")
    auth: AuthSection = Field(default_factory=AuthSection, description="Accounts and security.")
    candidates: CandidatesSection = Field(
        default_factory=CandidatesSection, description="Candidates, photos and imports.")
    store: StoreSection = Field(default_factory=StoreSection, description="LMDB store.")
    log: LogSection = Field(default_factory=LogSection, description="Logging.")


def _sections() -> list[tuple[str, str, type[Section]]]:
    """Return (name, description, model) of every section of ``NodeConfig``."""
    out = []
    for name, f in NodeConfig.model_fields.items():
        model = f.annotation
        if not (isinstance(model, type) and issubclass(model, Section)):
            raise TypeError(f"section {name} is not a Section model")
        out.append((name, f.description or "", model))
    return out


def _coerce_env(raw: str, annotation: Any) -> Any:
    if get_origin(annotation) is list:
        return [p.strip() for p in raw.split(",") if p.strip()]
    if annotation is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Return the ``NODE_<SECTION>_<FIELD>`` overrides found in ``environ``."""
    out: dict[str, dict[str, Any]] = {}
    for section, _desc, model in _sections():
        for name, f in model.model_fields.items():
            var = f"{ENV_PREFIX}{section}_{name}".upper()
            if var in environ:
                out.setdefault(section, {})[name] = _coerce_env(environ[var], f.annotation)
    return out


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_config(data_dir: Path, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Read ``DIR/node.toml`` and apply environment overrides."""
    path = Path(data_dir) / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: not found (run 'examnode init' first)") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from e
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    for section, values in env_overrides(os.environ if environ is None else environ).items():
        if not isinstance(data.get(section, {}), dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        data.setdefault(section, {}).update(values)
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_describe(e)}") from e


def write_config(data_dir: Path, config: NodeConfig) -> Path:
    """Write ``config`` as ``DIR/node.toml`` (fails if the file exists)."""
    path = Path(data_dir) / CONFIG_FILE
    with path.open("x", encoding="utf-8") as f:
        f.write("# examnode node configuration; see node.toml.example for every field.\n")
        f.write(tomli_w.dumps(config.model_dump(mode="json")))
    return path


def example_toml() -> str:
    """Return a commented ``node.toml`` listing every field with its default."""
    lines = ["# examnode node.toml: every setting, its default and what it means.",
             "# Environment variables NODE_<SECTION>_<FIELD> override these values.", ""]
    defaults = NodeConfig().model_dump(mode="json")
    for section, desc, model in _sections():
        lines.append(f"# {desc}")
        lines.append(f"[{section}]")
        for name, f in model.model_fields.items():
            lines.append(f"# {f.description}")
            value = tomli_w.dumps({name: defaults[section][name]}).strip()
            lines.append(value)
        lines.append("")
    return "\n".join(lines)
