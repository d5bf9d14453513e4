"""Configuration: every field documented, example complete, env overrides, clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from node.config import NodeConfig, Section, _sections, example_toml, load_config, write_config
from node.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_every_field_has_a_description_and_a_default() -> None:
    for name, _desc, model in _sections():
        for fname, f in model.model_fields.items():
            assert f.description, f"{name}.{fname} has no description"
            assert not f.is_required(), f"{name}.{fname} has no default"


def test_example_file_lists_every_field() -> None:
    example = tomllib.loads((ROOT / "node.toml.example").read_text())
    for name, _desc, model in _sections():
        assert name in example, f"node.toml.example lacks [{name}]"
        missing = set(model.model_fields) - set(example[name])
        assert not missing, f"node.toml.example lacks {name}.{sorted(missing)}"
    assert NodeConfig.model_validate(example) == NodeConfig()
    assert (ROOT / "node.toml.example").read_text() == example_toml(), \
        "node.toml.example is stale: regenerate it with 'examnode config-example'"


def test_env_overrides_file(tmp_path: Path) -> None:
    write_config(tmp_path, NodeConfig())
    cfg = load_config(tmp_path, {"NODE_HTTP_PORT": "8799", "NODE_DISCOVERY_PEERS":
                                 "http://127.0.0.1:1, http://127.0.0.1:2",
                                 "NODE_HTTP_ACCESS_LOG": "false", "NODE_NODE_CENTER": "C01"})
    assert cfg.http.port == 8799
    assert cfg.discovery.peers == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert cfg.http.access_log is False
    assert cfg.node.center == "C01"


@pytest.mark.parametrize(("text", "needle"), [
    ("[http]\nport = 'eighty'\n", "http.port"),
    ("[http]\nport = 70000\n", "http.port"),
    ("[http]\nhost = 'example.org'\n", "http.host"),
    ("[http]\nbogus = 1\n", "http.bogus"),
    ("[nonsense]\n", "nonsense"),
    ("[http\n", "not valid TOML"),
    ("[node]\ncenter = 'has space'\n", "node.center"),
])
def test_bad_file_names_file_field_and_reason(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "node.toml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, {})
    assert str(tmp_path / "node.toml") in e.value.detail
    assert needle in e.value.detail


def test_bad_env_override_is_reported(tmp_path: Path) -> None:
    write_config(tmp_path, NodeConfig())
    with pytest.raises(ConfigError, match=r"http\.port"):
        load_config(tmp_path, {"NODE_HTTP_PORT": "abc"})


def test_sections_are_strict_models() -> None:
    for _name, _desc, model in _sections():
        assert issubclass(model, Section)
        assert model.model_config.get("extra") == "forbid"


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, _desc, model in _sections():
        for fname in model.model_fields:
            assert f"`{name}.{fname}`" in readme, f"README does not document {name}.{fname}"
            assert f"`NODE_{name.upper()}_{fname.upper()}`" in readme


def test_readme_shows_the_permission_table() -> None:
    from node.services.auth.permissions import render_markdown

    assert render_markdown() in (ROOT / "README.md").read_text(), \
        "README's permission table is stale: paste render_markdown()'s output"
