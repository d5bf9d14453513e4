"""``examnode candidates import|export|validate``: offline on a stopped node, and through
the API while the node runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.candidates.conftest import (
    PASSWORD,
    cli,
    create,
    create_superuser,
    node_config,
    read_xlsx,
    start_site,
    xlsx,
)
from tests.conftest import run_cli
from tests.replication.conftest import Cluster, cluster, edit_config, offline_store, records

__all__ = ["cluster"]  # the fixture


async def test_validate_reevaluates_after_the_rules_change(cluster: Cluster) -> None:
    site = await start_site(cluster)
    await create(site.admin, "V-1")  # eligible under every rule set here
    await create(site.admin, "V-2", fee_paid=False)
    await create(site.admin, "V-3", date_of_birth="1980-01-01")
    await create(site.admin, "V-4", fee_paid=False)
    r = await site.admin.patch("/api/candidates/V-4/", {"eligibility_override": "ineligible",
                                                        "eligibility_note": "copied"})
    assert r.status == 200, r
    # Not while the node runs: its writer owns the live records.
    r = await cli("candidates", "validate", "--data", site.node.data)
    assert r.code != 0 and "running" in r.err, r

    await site.node.stop()
    edit_config(site.node.data, {"candidates": {"require_fee_paid": False, "max_age": 0}})
    r = await cli("candidates", "validate", "--data", site.node.data)
    assert r.code == 0, r.err
    # V-2 (fee) and V-3 (age) become eligible; V-4 keeps its decision by hand.
    assert "eligible 3, ineligible 1, changed 2" in r.out, r.out
    r = await cli("candidates", "validate", "--data", site.node.data)
    assert "changed 0" in r.out, r.out

    await site.node.start()
    for roll, status in (("V-1", "eligible"), ("V-2", "eligible"), ("V-3", "eligible"),
                         ("V-4", "ineligible")):
        got = (await site.admin.get(f"/api/candidates/{roll}/")).body
        assert got["eligibility"]["status"] == status, got
    # And new saves use the new rules.
    assert (await create(site.admin, "V-5", fee_paid=False))["eligibility"]["status"] == \
        "eligible"


CSV = ("Roll No;Cand Name;DOB;Sex;Fee Paid;Docs Verified\n"
       "C-001;Asha Rao;2001-02-03;F;yes;yes\n"
       "C-002;Bilal Khan;15/08/2002;M;no;yes\n"
       "C-003;;2001-02-03;F;yes;yes\n")  # no name: rejected


async def test_offline_import_dry_run_and_export(cluster: Cluster, tmp_path: Path) -> None:
    node = await cluster.init("offline", center="DEMO", config=node_config())
    await create_superuser(node)
    src = tmp_path / "batch.csv"
    src.write_text(CSV, encoding="utf-8")

    def stored() -> dict[str, dict[str, object]]:
        with offline_store(node.data) as store:
            return records(store, "candidates")

    r = await cli("candidates", "import", "--data", node.data, src, "--dry-run",
                  "--map", "Cand Name=full_name")
    assert r.code == 1, r  # a row was rejected
    assert "created 2, updated 0, unchanged 0, rejected 1" in r.out, r.out
    assert "dry run: nothing written" in r.out and "row 4" in r.out, r.out
    assert stored() == {}

    r = await cli("candidates", "import", "--data", node.data, src, "--map",
                  "Cand Name=full_name", "--rejected", tmp_path / "bad.xlsx")
    assert "created 2, updated 0, unchanged 0, rejected 1" in r.out, r.out
    assert "100.0%" in r.err  # the progress bar
    data = stored()
    assert set(data) == {"candidates/C-001", "candidates/C-002"}
    assert data["candidates/C-002"]["date_of_birth"] == "2002-08-15"
    assert data["candidates/C-002"]["gender"] == "male"
    rejected = read_xlsx((tmp_path / "bad.xlsx").read_bytes())
    assert rejected[0][-1] == "error" and rejected[1][0] == "C-003", rejected

    r = await cli("candidates", "import", "--data", node.data, src, "--map",
                  "Cand Name=full_name")
    assert "created 0, updated 0, unchanged 2, rejected 1" in r.out, r.out
    # Without the mapping there is no name column: the whole file is refused.
    r = await cli("candidates", "import", "--data", node.data, src)
    assert r.code == 1 and "failed" in r.out and "Columns found" in r.out, r.out

    out = tmp_path / "export.xlsx"
    r = await cli("candidates", "export", "--data", node.data, "--out", out)
    assert r.code == 0, r.err
    rows = read_xlsx(out.read_bytes())
    assert rows[0][:3] == ["roll_no", "registration_no", "full_name"]
    assert [(row[0], row[2]) for row in rows[1:]] == [("C-001", "Asha Rao"),
                                                      ("C-002", "Bilal Khan")]
    out = tmp_path / "export.csv"
    r = await cli("candidates", "export", "--data", node.data, "--out", out, "--format", "csv",
                  "--search", "bilal")
    text = out.read_bytes().decode("utf-8-sig")
    assert text.splitlines()[1].startswith("C-002,"), text
    assert len(text.splitlines()) == 2


async def test_import_and_export_while_the_node_runs(cluster: Cluster, tmp_path: Path) -> None:
    site = await start_site(cluster)
    src = tmp_path / "live.xlsx"
    src.write_bytes(xlsx([["Roll", "Name", "Centre"], ["L-1", "Live One", "DEMO"],
                          ["L-2", "Live Two", "DEMO"]]))
    r = await cli("candidates", "import", "--data", site.node.data, src)
    assert r.code == 2 and "--username" in r.err, r

    r = await cli("candidates", "import", "--data", site.node.data, src, "--username", "root",
                  "--password-stdin", stdin=PASSWORD + "\n")
    assert r.code == 0, r
    assert "done: 2 rows: created 2" in r.out, r.out
    assert "100.0%" in r.err, r.err
    items = await site.admin.all("/api/candidates/?search=L-")
    assert [c["full_name"] for c in items] == ["Live One", "Live Two"]

    r = await cli("candidates", "import", "--data", site.node.data, src, "--username", "root",
                  "--password-stdin", stdin="wrong-password\n")
    assert r.code != 0 and "refused" in r.err, r

    # Export only reads: it works beside the running node (another process, as in real use).
    out = tmp_path / "live-export.csv"
    result = await asyncio.to_thread(run_cli, "candidates", "export", "--data", site.node.data,
                                     "--out", out, "--format", "csv")
    assert result.returncode == 0, result.stderr
    lines = out.read_bytes().decode("utf-8-sig").splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["L-1", "L-2"]


async def test_import_without_a_centre_column_works_the_same_running_or_not(
        cluster: Cluster, tmp_path: Path) -> None:
    """The same command on the same file must not depend on whether the node runs.

    Bug: stopped, ``examnode candidates import`` gives rows without a centre the node's
    centre (node/cli/candidates.py ``_import_offline``: ``args.center or ctx.center``);
    running, it goes through the API, where an admin's job has no default centre
    (node/services/candidates/importer.py ``Importer.start`` keeps ``center=None``), so
    every row is rejected 'center: This field is required'. The API import of an admin on
    a centre's node has the same problem. Fix: default ``center`` to the node's centre
    (when it is not an HQ) in ``Importer.start``, as the offline path does.
    """
    src = tmp_path / "no-centre.csv"
    src.write_text("Roll No,Candidate Name\nNC-1,No Centre\n", encoding="utf-8")
    node = await cluster.init("nc", center="DEMO", config=node_config())
    await create_superuser(node)
    offline = await cli("candidates", "import", "--data", node.data, src, "--dry-run")
    assert offline.code == 0 and "created 1" in offline.out, offline
    await node.start()
    running = await cli("candidates", "import", "--data", node.data, src, "--dry-run",
                        "--username", "root", "--password-stdin", stdin=PASSWORD + "\n")
    assert (running.code, "created 1" in running.out) == (0, True), running
