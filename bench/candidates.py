"""Benchmark of bulk candidate import and export (.xlsx and .csv); not a test.

Measures, in one run:

* import of a generated file of 100,000 candidates (``--rows``), once as .xlsx
  and once as .csv, each into a fresh data directory made with ``examnode
  init`` and ``examnode createsuperuser --generate`` (which also creates the
  centre). The import runs offline exactly as ``examnode candidates import``
  does (``open_offline`` + ``Importer.run`` with an ``ImportJob``), in a
  separate process per measurement so that its peak RSS (VmHWM) is that of
  the import alone. Reported: rows/s, seconds until ``Importer.run`` returned
  (every ``Store.put`` returns only once its batch is committed, so that is
  when all rows are durable), the time in each phase, and peak RSS.
* export of those candidates to .xlsx and .csv
  (``node.services.candidates.exporter.export`` with an admin principal, as
  ``examnode candidates export`` does): seconds and peak RSS.
* baselines from the same run, each in its own process: parsing alone
  (``tabular.read_sheet``), ``pandas.read_excel`` / ``read_csv`` of the same
  files, and the same number of raw ``Store.put`` calls with records of the
  same size and the importer's concurrency (chunks of 200), without parsing or
  validation.
* the goals: 100,000 rows imported and durable in at most 60 s with a peak RSS
  of at most 1 GB; export in at most 20 s. ``MET`` or ``NOT MET``.

``--profile`` instead profiles one .xlsx import (py-spy on the child process,
all threads; cProfile of the event-loop thread if py-spy is missing) and
prints where the time goes.

Run: ``cd /work/main && PYTHONPATH=. .venv/bin/python bench/candidates.py [--quick]``
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import med, package_versions

ROOT = Path(__file__).resolve().parents[1]
EXAMNODE = [sys.executable, "-m", "node.cli.main"]
CENTER = "BENCH"
GOAL_ROWS = 100_000
GOAL_IMPORT_S = 60.0  # for GOAL_ROWS rows, imported and durable
GOAL_RSS = 1_000_000_000  # 1 GB (10^9 bytes) peak RSS of the import process
GOAL_EXPORT_S = 20.0  # for GOAL_ROWS rows
CHUNK = 200  # the importer's concurrency (node.services.candidates.importer.CHUNK)
HEADERS = ["roll_no", "full_name", "date_of_birth", "gender", "center", "email", "phone",
           "fee_paid", "documents_verified"]


# --- configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    rows: int = 100_000
    rounds: int = 3  # at most; a round is every measurement once
    budget: float = 360.0  # no further round is started that would end after this (s)
    profile: bool = False
    keep: bool = False


def make_config(args: argparse.Namespace) -> Config:
    cfg = Config(rows=10_000, rounds=1) if args.quick else Config()
    over = {k: getattr(args, k) for k in ("rows", "rounds", "budget")
            if getattr(args, k) is not None}
    return Config(**{**cfg.__dict__, **over, "profile": args.profile, "keep": args.keep})


# --- helpers ------------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / 1024**2:,.0f} MiB"


def versions() -> dict[str, str]:
    return package_versions("openpyxl", "pandas", "pydantic", "email-validator", "lmdb",
                            "pycrdt", "msgpack")


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def cli(*args: str) -> str:
    """Run ``examnode ARGS``; return its stdout or fail with its output."""
    proc = subprocess.run([*EXAMNODE, *args], capture_output=True, text=True, timeout=180,
                          env=child_env(), cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"examnode {args[0]} exited {proc.returncode}:\n{proc.stdout}"
                           f"{proc.stderr}")
    return proc.stdout


def fresh_node(path: Path) -> Path:
    """``examnode init`` + ``createsuperuser --generate`` (which creates the centre)."""
    cli("init", "--data", str(path), "--center", CENTER, "--mdns-interface", "none")
    cli("createsuperuser", "--data", str(path), "--username", "admin", "--generate")
    return path


def machine_load() -> str:
    return f"load avg {os.getloadavg()[0]:.2f}"


# --- the generated files -----------------------------------------------------------------

FIRST = ["Aarav", "Vivaan", "Aditya", "Ishaan", "Priya", "Ananya", "Diya", "Kavya", "Rohan",
         "Sneha", "Arjun", "Meera", "Rahul", "Pooja", "Vikram", "Fatima", "Imran", "Sara",
         "John", "Mary", "Grace", "Daniel", "Chinedu", "Amaka", "Tendai", "Wanjiru"]
LAST = ["Sharma", "Patel", "Reddy", "Iyer", "Nair", "Gupta", "Singh", "Khan", "Das", "Menon",
        "Joshi", "Banerjee", "Fernandes", "D'Souza", "Okafor", "Mwangi", "Smith", "O'Brien",
        "Chatterjee", "Kulkarni", "Venkataraman", "Mukherjee-Rao"]
DEVANAGARI = ["अनन्या शर्मा", "राहुल वर्मा", "प्रिया गुप्ता", "आदित्य सिंह", "कविता देवी",
              "सौरभ त्रिपाठी", "नेहा कुमारी", "विक्रम चौहान"]
ARABIC = ["محمد العلي", "فاطمة الزهراء", "عمر الخطيب", "ليلى حسن", "يوسف عبد الله",
          "مريم السيد", "أحمد منصور"]
ACCENTED = ["José Müller", "Zoë Ångström", "Nguyễn Thị Hà", "François Lefèvre",
            "Łukasz Wójcik", "Ñuño Peña", "Çağla Öztürk", "Søren Kierkegård",
            "Jose\u0301 Garci\u0301a"]  # the last one decomposed (NFD), as some keyboards type
DOMAINS = ["gmail.com", "yahoo.co.in", "outlook.com", "rediffmail.com", "proton.me"]


def candidate_row(i: int, rnd: random.Random) -> dict[str, Any]:
    """Return candidate ``i`` as typed values (the .xlsx cells; the CSV renders them)."""
    r = rnd.random()
    if r < 0.05:
        name = rnd.choice(DEVANAGARI)
    elif r < 0.10:
        name = rnd.choice(ARABIC)
    elif r < 0.18:
        name = rnd.choice(ACCENTED)
    else:
        name = f"{rnd.choice(FIRST)} {rnd.choice(LAST)}"
        if rnd.random() < 0.3:
            name = f"{rnd.choice(FIRST)} {name}"
    if r < 0.18:
        email = f"candidate{i}@{rnd.choice(DOMAINS)}"
    else:
        email = (name.lower().replace(" ", ".").replace("'", "") + f"{i}@"
                 + rnd.choice(DOMAINS))
    dob = datetime.date(2000, 1, 1) + datetime.timedelta(days=rnd.randrange(3650))
    return {
        "roll_no": f"{i + 1:08d}",  # leading zeros: text, never a number
        "full_name": name,
        "date_of_birth": dob,
        "gender": rnd.choice(["F", "M", "Female", "male", "F", "M", "O"]),
        "center": CENTER,
        "email": email,
        "phone": f"+91 9{rnd.randrange(10**8, 10**9)}",
        "fee_paid": rnd.random() < 0.9,
        "documents_verified": rnd.random() < 0.8,
        "text_dob": rnd.random() < 0.15,  # this row's date is typed as DD/MM/YYYY text
        "text_bool": rnd.random() < 0.2,  # this row's booleans are typed as yes/no text
    }


def xlsx_cells(c: dict[str, Any]) -> list[Any]:
    dob = c["date_of_birth"].strftime("%d/%m/%Y") if c["text_dob"] else c["date_of_birth"]

    def b(v: bool) -> Any:
        return ("Yes" if v else "No") if c["text_bool"] else v
    return [c["roll_no"], c["full_name"], dob, c["gender"], c["center"], c["email"], c["phone"],
            b(c["fee_paid"]), b(c["documents_verified"])]


def csv_cells(c: dict[str, Any]) -> list[str]:
    dob = c["date_of_birth"]
    dob_s = dob.strftime("%d/%m/%Y") if c["text_dob"] else dob.isoformat()

    def b(v: bool) -> str:
        return ("yes" if v else "no") if c["text_bool"] else ("TRUE" if v else "FALSE")
    return [c["roll_no"], c["full_name"], dob_s, c["gender"], c["center"], c["email"],
            c["phone"], b(c["fee_paid"]), b(c["documents_verified"])]


def stored_record(c: dict[str, Any], now: float) -> dict[str, Any]:
    """The fields the importer stores for row ``c``, built without parsing or validation."""
    import unicodedata

    reasons = []
    if not c["documents_verified"]:
        reasons.append("documents not verified")
    if not c["fee_paid"]:
        reasons.append("fee not paid")
    g = c["gender"].lower()
    return {
        "registration_no": "", "full_name": unicodedata.normalize("NFC", c["full_name"]),
        "date_of_birth": c["date_of_birth"].isoformat(),
        "gender": {"f": "female", "m": "male", "o": "other"}.get(g, g), "category": "",
        "email": c["email"], "phone": c["phone"], "address": "", "center": c["center"],
        "registered_exams": [], "accommodations": {"extra_time_percent": 0, "scribe": False,
                                                   "large_print": False,
                                                   "separate_room": False},
        "documents_verified": c["documents_verified"], "fee_paid": c["fee_paid"],
        "status": "registered", "roll_no": c["roll_no"],
        "eligibility": {"status": "ineligible" if reasons else "eligible",
                        "reasons": reasons, "decided_by": "rules", "decided_at": now},
        "updated_at": now,
    }


def candidates(rows: int, seed: int = 2026) -> Iterator[dict[str, Any]]:
    rnd = random.Random(seed)
    for i in range(rows):
        yield candidate_row(i, rnd)


def sample_rolls(rows: int) -> list[str]:
    """Roll numbers to read back after an import: the first Devanagari, Arabic and
    decomposed (NFD) name, and the last row."""
    out: dict[str, str] = {}
    tests: dict[str, Callable[[str], bool]] = {
        "devanagari": lambda n: n in DEVANAGARI, "arabic": lambda n: n in ARABIC,
        "nfd": lambda n: n == ACCENTED[-1]}
    for c in candidates(min(rows, 5000)):
        for kind, test in tests.items():
            if kind not in out and test(c["full_name"]):
                out[kind] = c["roll_no"]
    return [*out.values(), f"{rows:08d}"]


def generate(rows: int, xlsx: Path, csv_path: Path) -> None:
    """Write the same candidates as .xlsx (openpyxl write_only) and as CSV UTF-8 with BOM."""
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Candidates")
    ws.append(HEADERS)
    with open(csv_path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)  # Excel's "CSV UTF-8": BOM, CRLF
        w.writerow(HEADERS)
        for c in candidates(rows):
            ws.append(xlsx_cells(c))
            w.writerow(csv_cells(c))
    wb.save(xlsx)


# --- child processes ------------------------------------------------------------------


def proc_mem() -> dict[str, int]:
    """This process's VmHWM (peak RSS), VmRSS, RssAnon and RssFile, in bytes."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[name] = int(rest.split()[0]) * 1024
    return out


def _task_import(spec: dict[str, Any]) -> dict[str, Any]:
    """Import a file as ``examnode candidates import`` does offline, with phase marks."""
    import asyncio

    import msgpack

    import node.services.candidates.importer as imp
    from node.runtime import open_offline

    marks: dict[str, float] = {}
    chunks: list[tuple[float, int]] = []
    orig_read = imp.read_sheet  # type: ignore[attr-defined]

    def read_sheet(data: bytes, max_rows: int) -> Any:
        marks["parse_start"] = time.perf_counter()
        try:
            return orig_read(data, max_rows)
        finally:
            marks["parse_end"] = time.perf_counter()
            marks["hwm_parsed"] = proc_mem()["VmHWM"]

    imp.read_sheet = read_sheet  # type: ignore[attr-defined]
    t_open = time.perf_counter()
    ctx, _ = open_offline(Path(spec["data"]))
    t_open = time.perf_counter() - t_open
    importer = ctx.candidates.importer
    orig_one = importer._one

    async def one(actor: Any, body: Any, dry_run: bool) -> str:
        if "first_put" not in marks:
            marks["first_put"] = time.perf_counter()
            marks["hwm_validated"] = proc_mem()["VmHWM"]
        return str(await orig_one(actor, body, dry_run))

    importer._one = one
    writer = ctx.store.writer
    orig_batch = writer._run_batch
    wmeter = [0, 0.0]

    def run_batch(batch: list[Any]) -> None:
        t = time.perf_counter()
        try:
            orig_batch(batch)
        finally:
            wmeter[0] += 1
            wmeter[1] += time.perf_counter() - t

    writer._run_batch = run_batch  # type: ignore[method-assign]
    mem0 = proc_mem()
    t0 = time.perf_counter()
    data = Path(spec["file"]).read_bytes()
    center = None if ctx.config.node.role == "hq" else ctx.center
    job = imp.ImportJob("bench", "operator", center, spec["file"], False)
    asyncio.run(importer.run(job, None, data, {},
                             progress=lambda j: chunks.append((time.perf_counter(),
                                                               j.processed))))
    t1 = time.perf_counter()
    mem1 = proc_mem()
    del data
    samples = []
    for roll in spec.get("sample", []):
        v = ctx.store.get(f"candidates/{roll}")
        if v is not None:
            samples.append({"roll": roll, "name": v.data.get("full_name"),
                            "dob": v.data.get("date_of_birth"),
                            "bytes": len(msgpack.packb(v.data))})
    t2 = time.perf_counter()
    ctx.store.close()
    t_close = time.perf_counter() - t2
    rep = job.report()
    # upsert rate in each tenth of the rows (does it slow down as the store grows?)
    tenths = []
    if chunks and "first_put" in marks:
        prev_t, prev_n = marks["first_put"], 0
        step = max(1, rep["total"] // 10)
        for t, n in chunks:
            if n > prev_n and (n - prev_n >= step or n == rep["total"]):
                tenths.append((n - prev_n) / max(1e-9, t - prev_t))
                prev_t, prev_n = t, n
    return {
        "tenths": tenths,
        "status": rep["status"], "detail": rep["detail"], "total": rep["total"],
        "created": rep["created"], "updated": rep["updated"], "unchanged": rep["unchanged"],
        "rejected": rep["rejected"], "errors": rep["errors"][:5],
        "seconds": t1 - t0, "open": t_open, "close": t_close,
        "parse": marks.get("parse_end", t0) - marks.get("parse_start", t0),
        "validate": marks.get("first_put", t1) - marks.get("parse_end", t0),
        "writes": t1 - marks.get("first_put", t1),
        "batches": wmeter[0], "writer_busy": wmeter[1],
        "hwm_parsed": marks.get("hwm_parsed", 0), "hwm_validated": marks.get("hwm_validated", 0),
        "mem_before": mem0, "mem_after": mem1, "samples": samples,
    }


def _task_export(spec: dict[str, Any]) -> dict[str, Any]:
    from node.cli.candidates import _operator
    from node.runtime import open_offline
    from node.services.candidates.exporter import export

    t_open = time.perf_counter()
    ctx, _ = open_offline(Path(spec["data"]))
    t_open = time.perf_counter() - t_open
    mem0 = proc_mem()
    try:
        t0 = time.perf_counter()
        data, _media = export(ctx.candidates.records, _operator(), {}, spec["format"])
        Path(spec["out"]).write_bytes(data)
        t1 = time.perf_counter()
    finally:
        ctx.store.close()
    if spec["format"] == "csv":
        lines = data.decode("utf-8-sig").count("\n") - 1
    else:
        lines = -1  # counted by the parent with read_sheet only if asked
    return {"seconds": t1 - t0, "open": t_open, "bytes": len(data), "rows": lines,
            "mem_before": mem0}


def _task_read_sheet(spec: dict[str, Any]) -> dict[str, Any]:
    from node.services.candidates.tabular import read_sheet

    mem0 = proc_mem()
    t0 = time.perf_counter()
    data = Path(spec["file"]).read_bytes()
    sheet = read_sheet(data, 10**9)
    t1 = time.perf_counter()
    return {"seconds": t1 - t0, "rows": len(sheet.rows), "mem_before": mem0,
            "first": [str(x) for x in sheet.rows[0][1][:3]] if sheet.rows else []}


def _task_pandas(spec: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    mem0 = proc_mem()
    t0 = time.perf_counter()
    if spec["file"].endswith(".xlsx"):
        df = pd.read_excel(spec["file"], engine="openpyxl", dtype=str, keep_default_na=False)
    else:
        df = pd.read_csv(spec["file"], dtype=str, keep_default_na=False, encoding="utf-8-sig")
    t1 = time.perf_counter()
    return {"seconds": t1 - t0, "rows": len(df), "mem_before": mem0,
            "first": [str(x) for x in df.iloc[0, :3]] if len(df) else []}


def _task_raw_puts(spec: dict[str, Any]) -> dict[str, Any]:
    """The importer's store writes alone: same count, record size and concurrency."""
    import asyncio

    import msgpack

    from node.runtime import open_offline

    ctx, _ = open_offline(Path(spec["data"]))
    now = time.time()
    records = [(f"candidates/{c['roll_no']}", stored_record(c, now))
               for c in candidates(spec["rows"])]
    size = statistics.median(len(msgpack.packb(r)) for _, r in records[:2000])
    writer = ctx.store.writer
    orig_batch = writer._run_batch
    wmeter = [0, 0.0]

    def run_batch(batch: list[Any]) -> None:
        t = time.perf_counter()
        try:
            orig_batch(batch)
        finally:
            wmeter[0] += 1
            wmeter[1] += time.perf_counter() - t

    writer._run_batch = run_batch  # type: ignore[method-assign]

    async def go() -> None:
        store = ctx.store
        for start in range(0, len(records), CHUNK):
            chunk = records[start:start + CHUNK]
            results = await asyncio.gather(*(store.put(k, f, scope=CENTER, user="")
                                             for k, f in chunk))
            if not all(r.changed for r in results):
                raise AssertionError("a raw put was not a change")

    mem0 = proc_mem()
    try:
        t0 = time.perf_counter()
        asyncio.run(go())
        t1 = time.perf_counter()
    finally:
        ctx.store.close()
    return {"seconds": t1 - t0, "rows": len(records), "record_bytes": size,
            "batches": wmeter[0], "writer_busy": wmeter[1], "mem_before": mem0}


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "import": _task_import, "export": _task_export, "read_sheet": _task_read_sheet,
    "pandas": _task_pandas, "raw_puts": _task_raw_puts,
}


def child_main() -> None:
    """Entry point of a measurement process: ``python -c ... SPEC_JSON``."""
    spec = json.loads(sys.argv[1])
    # Import the heavy modules before any clock starts, in every task alike (the import
    # itself costs ~0.5 s once per process, not per row).
    import openpyxl  # noqa: F401
    if spec["task"] == "pandas":
        import pandas  # noqa: F401
    else:
        import node.runtime
        import node.services.candidates.importer  # noqa: F401
    prof = None
    if spec.get("cprofile"):
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    out = TASKS[spec["task"]](spec)
    if prof is not None:
        prof.disable()
        prof.dump_stats(spec["cprofile"])
    out["hwm"] = proc_mem()["VmHWM"]
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")
    sys.stdout.flush()


def run_child(spec: dict[str, Any], wrap: Sequence[str] = (), timeout: float = 1800
              ) -> dict[str, Any]:
    """Run one measurement in a fresh Python process; return its result."""
    code = "from bench.candidates import child_main; child_main()"
    cmd = [*wrap, sys.executable, "-c", code, json.dumps(spec)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=ROOT,
                          timeout=timeout, check=False)
    wall = time.perf_counter() - t
    result: dict[str, Any] | None = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"{spec['task']} child exited {proc.returncode}:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result["wall"] = wall
    return result


# --- the run ------------------------------------------------------------------------------


@dataclass
class Files:
    xlsx: Path
    csv: Path


def import_line(label: str, r: dict[str, Any], rows: int) -> str:
    return (f"  import {label:4s} {rows / r['seconds']:7,.0f} rows/s  {r['seconds']:6.1f} s "
            f"(parse {r['parse']:.1f}, map+validate {r['validate']:.1f}, upserts "
            f"{r['writes']:.1f}; {r['batches']:,} batches, writer busy {r['writer_busy']:.1f} "
            f"s)  peak RSS {mib(r['hwm'])} (after parse {mib(r['hwm_parsed'])}, after "
            f"validation {mib(r['hwm_validated'])}, idle {mib(r['mem_before']['VmRSS'])}; at the "
            f"end anon {mib(r['mem_after'].get('RssAnon', 0))}, file/mmap "
            f"{mib(r['mem_after'].get('RssFile', 0))})  "
            f"created {r['created']:,}, rejected {r['rejected']:,}  [{machine_load()}]\n"
            f"              upserts/s in each tenth of the rows: "
            + " ".join(f"{x:,.0f}" for x in r["tenths"]))


def check_import(r: dict[str, Any], rows: int, label: str) -> None:
    if r["status"] != "done" or r["created"] != rows or r["rejected"] or r["updated"]:
        raise RuntimeError(f"{label} import did not create every row: status {r['status']} "
                           f"{r['detail']}; created {r['created']}, updated {r['updated']}, "
                           f"rejected {r['rejected']}; first errors {r['errors']}")


def run_benchmark(cfg: Config, root: Path, started: float, say: Callable[[str], None]) -> bool:
    files = Files(root / "candidates.xlsx", root / "candidates.csv")
    t = time.perf_counter()
    generate(cfg.rows, files.xlsx, files.csv)
    say(f"generated {cfg.rows:,} rows in {time.perf_counter() - t:.1f} s: "
        f"{files.xlsx.name} {files.xlsx.stat().st_size / 1e6:.1f} MB, "
        f"{files.csv.name} {files.csv.stat().st_size / 1e6:.1f} MB "
        f"(columns: {', '.join(HEADERS)})")
    sample = sample_rolls(cfg.rows)

    parse: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    imports: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    exports: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    raws: list[dict[str, Any]] = []
    t_rounds = time.perf_counter()
    for rnd in range(cfg.rounds):
        if rnd:
            spent = time.perf_counter() - t_rounds
            per_round = spent / rnd
            if time.perf_counter() - started + per_round > cfg.budget:
                say(f"(no round {rnd + 1}: a round takes {per_round:.0f} s and the budget is "
                    f"{cfg.budget:.0f} s from the start; figures below are from {rnd} "
                    f"round{'s' if rnd > 1 else ''})")
                break
        say(f"round {rnd + 1}/{cfg.rounds}")
        one_round(cfg, root, files, sample, rnd, parse, imports, raws, exports, say)
    rounds = len(raws)
    return report(cfg, rounds, parse, imports, raws, exports, say)


def one_round(cfg: Config, root: Path, files: Files, sample: list[str], rnd: int,
              parse: dict[str, list[dict[str, Any]]], imports: dict[str, list[dict[str, Any]]],
              raws: list[dict[str, Any]], exports: dict[str, list[dict[str, Any]]],
              say: Callable[[str], None]) -> None:
    """Every measurement once, each in its own process."""
    # baselines: parsing alone, pandas
    for kind, path in (("xlsx", files.xlsx), ("csv", files.csv)):
        for task in ("read_sheet", "pandas"):
            r = run_child({"task": task, "file": str(path)})
            if r["rows"] != cfg.rows:
                raise RuntimeError(f"{task} {kind} read {r['rows']} rows, not {cfg.rows}")
            parse[f"{task} {kind}"].append(r)
            say(f"  {task:10s} {kind:4s} {cfg.rows / r['seconds']:9,.0f} rows/s "
                f"{r['seconds']:6.2f} s  peak RSS {mib(r['hwm'])} (idle "
                f"{mib(r['mem_before']['VmRSS'])})  first cells {r['first']}")
    # imports, each into a fresh node
    export_from = None
    for kind, path in (("xlsx", files.xlsx), ("csv", files.csv)):
        data = fresh_node(root / f"node-{kind}-{rnd}")
        r = run_child({"task": "import", "data": str(data), "file": str(path),
                       "sample": sample})
        check_import(r, cfg.rows, kind)
        imports[kind].append(r)
        say(import_line(kind, r, cfg.rows))
        if kind == "xlsx":
            export_from = data
        else:
            shutil.rmtree(data, ignore_errors=True)
    if rnd == 0:
        xs = imports["xlsx"][0]["samples"]
        say("  stored (xlsx import): " + "; ".join(
            f"{s['roll']} {s['name']} {s['dob']} ({s['bytes']} B)" for s in xs))
    data = fresh_node(root / f"node-raw-{rnd}")
    r = run_child({"task": "raw_puts", "data": str(data), "rows": cfg.rows})
    raws.append(r)
    shutil.rmtree(data, ignore_errors=True)
    say(f"  raw puts  {cfg.rows / r['seconds']:7,.0f} puts/s  {r['seconds']:6.1f} s "
        f"({r['rows']:,} puts of {r['record_bytes']:.0f} B records, {CHUNK} at a time; "
        f"{r['batches']:,} batches, writer busy {r['writer_busy']:.1f} s)  peak RSS "
        f"{mib(r['hwm'])}  [{machine_load()}]")
    # exports, by a fresh process from the xlsx import's data dir (so also a check that
    # every imported row is on disk)
    assert export_from is not None
    for fmt in ("xlsx", "csv"):
        out = root / f"export-{rnd}.{fmt}"
        r = run_child({"task": "export", "data": str(export_from), "format": fmt,
                       "out": str(out)})
        if fmt == "csv" and r["rows"] != cfg.rows:
            raise RuntimeError(f"the CSV export has {r['rows']} rows, not {cfg.rows}")
        exports[fmt].append(r)
        say(f"  export {fmt:4s} {cfg.rows / r['seconds']:7,.0f} rows/s  "
            f"{r['seconds']:6.1f} s  {r['bytes'] / 1e6:.1f} MB  peak RSS {mib(r['hwm'])} "
            f"(idle {mib(r['mem_before']['VmRSS'])})"
            + (f"  {r['rows']:,} rows" if r["rows"] >= 0 else ""))
        out.unlink(missing_ok=True)
    shutil.rmtree(export_from, ignore_errors=True)


def report(cfg: Config, rounds: int, parse: dict[str, list[dict[str, Any]]],
           imports: dict[str, list[dict[str, Any]]], raws: list[dict[str, Any]],
           exports: dict[str, list[dict[str, Any]]], say: Callable[[str], None]) -> bool:
    n = cfg.rows
    scale = n / GOAL_ROWS
    say("")
    say(f"=== summary: {n:,} rows; medians of {rounds} round(s) ===")
    say(f"{'':22s} {'seconds':>8s} {'rows/s':>9s} {'peak RSS':>10s}")

    def row(label: str, rs: list[dict[str, Any]], extra: str = "") -> tuple[float, float]:
        s = med([r["seconds"] for r in rs])
        h = med([r["hwm"] for r in rs])
        say(f"{label:22s} {s:8.2f} {n / s:9,.0f} {mib(h):>10s}{extra}")
        return s, h

    res: dict[str, tuple[float, float]] = {}
    for kind in ("xlsx", "csv"):
        rs = imports[kind]
        res[kind] = row(f"import {kind}", rs, f"   parse {med([r['parse'] for r in rs]):.1f} + "
                        f"map/validate {med([r['validate'] for r in rs]):.1f} + upserts "
                        f"{med([r['writes'] for r in rs]):.1f} s")
        row(f"  read_sheet {kind}", parse[f"read_sheet {kind}"])
        row(f"  pandas {kind}", parse[f"pandas {kind}"])
    row("raw Store.put x N", raws, f"   same count, {med([r['record_bytes'] for r in raws]):.0f}"
        f" B records, {CHUNK} in flight, no parsing or validation")
    for fmt in ("xlsx", "csv"):
        res[f"export {fmt}"] = row(f"export {fmt}", exports[fmt])
    say("(import seconds: from reading the file until Importer.run returned, every row "
        "committed durably; peak RSS: VmHWM of the measuring process, interpreter and "
        "LMDB map pages included)")
    goal_import = GOAL_IMPORT_S * scale
    goal_export = GOAL_EXPORT_S * scale
    scaled = "" if n == GOAL_ROWS else f" (the {GOAL_ROWS:,}-row goal scaled to {n:,} rows)"
    say("")
    ok = True
    for kind in ("xlsx", "csv"):
        s, h = res[kind]
        ok_t, ok_m = s <= goal_import, h <= GOAL_RSS
        ok = ok and ok_t and ok_m
        say(f"goal: import {kind} durable in <= {goal_import:.0f} s{scaled}: {s:.1f} s "
            f"({n / s:,.0f} rows/s; needs {GOAL_ROWS / GOAL_IMPORT_S:,.0f}) -> {verdict(ok_t)}")
        say(f"goal: import {kind} peak RSS <= 1 GB (10^9 B): {h / 1e9:.2f} GB -> "
            f"{verdict(ok_m)}" + ("" if n == GOAL_ROWS else f" (at {n:,} rows only)"))
    for fmt in ("xlsx", "csv"):
        s, _h = res[f"export {fmt}"]
        ok_e = s <= goal_export
        ok = ok and ok_e
        say(f"goal: export {fmt} in <= {goal_export:.0f} s{scaled}: {s:.1f} s -> "
            f"{verdict(ok_e)}")
    return ok


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


# --- profile --------------------------------------------------------------------------


def profile_import(cfg: Config, root: Path, say: Callable[[str], None]) -> None:
    """Profile one .xlsx import: py-spy (every thread) or cProfile (event-loop thread)."""
    xlsx, csv_path = root / "candidates.xlsx", root / "candidates.csv"
    generate(cfg.rows, xlsx, csv_path)
    data = fresh_node(root / "node-profile")
    spy = shutil.which("py-spy") or (shutil.which("py-spy", path=str(Path(sys.executable)
                                                                      .parent)))
    spec: dict[str, Any] = {"task": "import", "data": str(data), "file": str(xlsx)}
    if spy:
        raw = root / "profile.txt"
        r = run_child(spec, wrap=[spy, "record", "--format", "raw", "--rate", "100",
                                  "--threads", "--gil", "--nonblocking", "--output", str(raw),
                                  "--"])
        say(import_line("xlsx", r, cfg.rows) + "  (under py-spy --gil)")
        print_spy(raw, say)
    else:
        prof = root / "import.prof"
        spec["cprofile"] = str(prof)
        r = run_child(spec)
        say(import_line("xlsx", r, cfg.rows) + "  (under cProfile, event-loop thread only)")
        import pstats

        st = pstats.Stats(str(prof))
        st.sort_stats("tottime").print_stats(25)


def print_spy(path: Path, say: Callable[[str], None]) -> None:
    """Summarise py-spy raw (collapsed) stacks: per thread, own and cumulative samples."""
    own: collections.Counter[str] = collections.Counter()
    cum: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        k = int(count)
        thread, *frames = stack.split(";")
        name = thread.split(":")[-1].strip() or thread
        # "func (path/file.py:line)" -> "func (dir/file.py)": one entry per function
        funcs = []
        for f in frames:
            func, _, where = f.partition(" (")
            where = where.rstrip(")").rsplit(":", 1)[0]
            funcs.append(f"{func} ({'/'.join(Path(where).parts[-2:])})")
        total += k
        threads[name] += k
        if funcs:
            own[f"{name[:15]:15s} {funcs[-1]}"] += k
        for f in set(funcs):
            cum[f"{name[:15]:15s} {f}"] += k
    if not total:
        say("py-spy recorded no samples")
        return
    say(f"py-spy: {total:,} samples of a thread holding the GIL (100/s), by thread:")
    for t, k in threads.most_common():
        say(f"  {k / total * 100:5.1f}%  {t}")
    say("top 25 functions by own samples (share of all GIL-holding samples):")
    for f, k in own.most_common(25):
        say(f"  {k / total * 100:5.1f}%  {f[:140]}")
    say("top 45 functions by cumulative samples:")
    for f, k in cum.most_common(45):
        say(f"  {k / total * 100:5.1f}%  {f[:140]}")


# --- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="smoke run: 10,000 rows, 1 round")
    p.add_argument("--rows", type=int, help="rows in the generated files (default 100000)")
    p.add_argument("--rounds", type=int,
                   help="most rounds to take medians over (default 3; --quick 1)")
    p.add_argument("--budget", type=float,
                   help="start no round that would end later than this many seconds after "
                        "the start (default 360)")
    p.add_argument("--profile", action="store_true",
                   help="only profile one .xlsx import (py-spy, else cProfile)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = make_config(args)

    def say(line: str) -> None:
        print(line, flush=True)

    def on_term(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # run the finally block: remove the files

    old_term = signal.signal(signal.SIGTERM, on_term)
    say(f"examnode candidates import/export benchmark  "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}")
    say("  ".join(f"{k} {val}" for k, val in versions().items())
        + f"  cpus {os.cpu_count()}  {platform.system()} {platform.machine()}  "
        f"{machine_load()}")
    say(f"{cfg.rows:,} rows; at most {cfg.rounds} round(s) within {cfg.budget:.0f} s; every "
        f"measurement in its own process")
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="examnode-bench-cand-"))
    try:
        if cfg.profile:
            profile_import(cfg, root, say)
            return 0
        ok = run_benchmark(cfg, root, started, say)
        say(f"\ntotal time {time.perf_counter() - started:.0f} s; {machine_load()}; goals "
            f"{'met' if ok else 'not met'}")
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if cfg.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
