"""Benchmark of ``zeroerrand rules dry-run``: 100,000 past items, with the decision memo and without.

Generates ``--items`` past items (JSON lines, the ``--items`` export format): projects of 25 plan
lines, every catalog item handled, each project's facts drawn at random (energy 0–20,000 tce as
whole tonnes, electricity 0–1,000 × 10⁴ kWh; one project in 50 without the electricity fact; a
third of the items open). The candidate is the repository's rules with the energy threshold moved
from 10,000 to 8,000 tce. It times, in this process, what the command does after the candidate's
check: reading the export and deciding every item under both rule sets (with the memo: each
combination of item, request and tested fact values once; without: every item under both engines,
their caches off), and checks that both runs find the same changes. It then runs the command itself
once (``python -m services.cli rules dry-run --items``, the check in its child included) for the
wall-clock time an operator sees. Last, unless ``--no-store``, the same items as ledger lines in a
fresh embedded store (in a temporary directory, stopped at the end): the time to read them back as
the command does (``services.evaluation.rules_items``) and decide them, with the memo. Prints the
figures and the machine; asserts nothing on timing.

    PYTHONPATH=. .venv/bin/python bench/rules_dry_run.py [--items 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402

from services.common.rule_files import load_rulebook  # noqa: E402
from services.router.dry_run import compare, read_items  # noqa: E402
from services.router.dry_run_command import engine_for  # noqa: E402

GOAL_S = 30.0
OLD, NEW = "project.annual_energy_tce: {gte: 10000}", "project.annual_energy_tce: {gte: 8000}"


def candidate_rules(target: Path) -> Path:
    shutil.copytree(ROOT / "rules", target)
    routing = target / "routing.yaml"
    text = routing.read_text(encoding="utf-8")
    assert OLD in text
    text = text.replace(OLD, NEW).replace("project.annual_energy_tce: {lt: 10000}", "project.annual_energy_tce: {lt: 8000}")
    routing.write_text(text, encoding="utf-8")
    return target


def generate(path: Path, count: int, seed: int = 12) -> int:
    """``count`` items in projects of every catalog item; returns how many projects cross 8,000–10,000."""
    book = load_rulebook(ROOT / "rules")
    codes = list(book.catalog)
    rng = random.Random(seed)
    crossing = 0
    with path.open("w", encoding="utf-8") as out:
        written, project = 0, 0
        while written < count:
            project += 1
            facts: dict[str, float] = {"annual_energy_tce": float(rng.randrange(0, 20_000))}
            if rng.randrange(50):
                facts["annual_electricity_10k_kwh"] = float(rng.randrange(0, 1_000))
            crossing += 8_000 <= facts["annual_energy_tce"] < 10_000
            for code in codes:
                if written == count:
                    break
                is_open = rng.random() < 1 / 3
                out.write(json.dumps({"project_code": f"BENCH-{project:06d}", "item_code": code, "request": "handle",
                                      "facts": facts, "open": is_open, "state": "ready" if is_open else "delivered"},
                                     ensure_ascii=False) + "\n")
                written += 1
    return crossing


async def from_store(export: Path, data_dir: Path, candidate: Path) -> None:
    """Stores the export as ledger lines (and the projects' facts), then reads and decides them."""
    os.environ["ZEROERRAND_DATA_DIR"] = str(data_dir)
    os.environ.pop("MONGODB_URL", None)
    from services.common.settings import StoreSettings
    from services.common.storage import store_session
    from services.evaluation.repository import COLLECTIONS, ITEMS, PROJECTS
    from services.evaluation.rules_items import ledger_items
    from services.router.dry_run import subject_from

    lines = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
    projects = {line["project_code"]: line["facts"] for line in lines}
    async with store_session(StoreSettings(), collections=COLLECTIONS) as store:
        started = time.perf_counter()
        await store.db[PROJECTS.name].insert_many([{"_id": code, "facts_json": json.dumps(facts)}
                                                   for code, facts in projects.items()])
        for start in range(0, len(lines), 5_000):
            await store.db[ITEMS.name].insert_many([
                {"_id": f"{line['project_code']}/{line['item_code']}", "project_code": line["project_code"],
                 "item_code": line["item_code"], "request": "handle", "state": line["state"], "open": line["open"],
                 "rules_version": "bench", "facts_json": "{}"} for line in lines[start:start + 5_000]])
        stored = time.perf_counter() - started
        started = time.perf_counter()
        subjects = [subject_from(record) async for record in ledger_items(store)]
        read = time.perf_counter() - started
    report = compare(engine_for(ROOT / "rules"), engine_for(candidate), subjects)
    total = read + report.seconds
    print(f"from the ledger in the embedded store ({len(lines):,} lines stored in {stored:.1f} s): read back "
          f"{read:.2f} s + decided {report.seconds:.2f} s (memo) = {total:.2f} s, {report.changed:,} changed — "
          f"{'met' if total <= GOAL_S else 'MISSED'} (≤ {GOAL_S:g} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--no-store", action="store_true", help="skip the run from the embedded store")
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory(prefix="zeroerrand-dry-run-") as tmp:
        base = Path(tmp)
        candidate = candidate_rules(base / "candidate")
        export = base / "items.jsonl"
        started = time.perf_counter()
        crossing = generate(export, args.items)
        print(f"generated {args.items:,} items ({export.stat().st_size / 2**20:.1f} MiB) in "
              f"{time.perf_counter() - started:.1f} s; {crossing:,} projects between 8,000 and 10,000 tce")
        reports = {}
        for memo in (True, False):
            started = time.perf_counter()
            active = engine_for(ROOT / "rules", memo=memo)
            cand = engine_for(candidate, memo=memo)
            loaded = time.perf_counter() - started
            report = compare(active, cand, read_items(export), memo=memo)
            total = time.perf_counter() - started
            reports[memo] = report
            print(f"{'with the memo   ' if memo else 'without the memo'}: {total:6.2f} s in all "
                  f"(rules {loaded:.2f} s, reading and deciding {report.seconds:.2f} s), "
                  f"{report.items / report.seconds:,.0f} items/s, {report.decisions:,} decision pairs, "
                  f"{report.changed:,} changed ({report.open_changed:,} open) — "
                  f"{'met' if total <= GOAL_S else 'MISSED'} (≤ {GOAL_S:g} s)")
        with_memo, without = reports[True], reports[False]
        assert with_memo.as_json()["changes"] == without.as_json()["changes"], "the memo changed the answer"
        print(f"memo speed-up: {without.seconds / with_memo.seconds:.1f}× "
              f"({without.seconds:.2f} s ÷ {with_memo.seconds:.2f} s)")
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "services.cli", "rules", "dry-run", "--rules", str(candidate),
                               "--active", str(ROOT / "rules"), "--items", str(export), "--json"],
                              cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        answer = json.loads(done.stdout)
        print(f"the command (rules dry-run --items, memo, check in its child): {wall:.2f} s wall, exit "
              f"{done.returncode}, {answer['changed']:,} changed — {'met' if wall <= GOAL_S else 'MISSED'} (≤ {GOAL_S:g} s)")
        if not args.no_store:
            data_dir = base / "var"
            data_dir.mkdir()
            data_dir.chmod(0o755)
            base.chmod(0o755)
            asyncio.run(from_store(export, data_dir, candidate))


if __name__ == "__main__":
    main()
