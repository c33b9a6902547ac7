"""How the ledger's periodic work grows with a year's data: the overdue sweep and the annual report.

Fills the in-memory ledger (the repository fake, so the figures are the ledger's own cost, not the
store's) with N projects of 25 items each in realistic states, then times, per N:

* the sweep (both clocks of every open item, on China's working-day calendar, nothing to announce
  twice), against the plain alternative of the same run: a bare loop that only counts each open
  item's working days since its start with the same calendar;
* ``evaluate`` for the year (every item's clocks, every 测评).

Run: ``.venv/bin/python bench/ledger_year.py [--projects 50 100 200 400]``. Prints the machine it ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import time
from datetime import UTC, date, datetime, timedelta

from services.common.bus import MemoryPublisher
from services.common.domain import Request, ServiceMode, Stage
from services.common.rule_files import load_rulebook
from services.common.settings import PROJECT_ROOT
from services.evaluation.handlers import Ledger, sweep
from services.evaluation.ledger import Assessment, ItemState, LedgerItem, TaskOrderRecord
from services.evaluation.repository import MemoryLedgerRepository
from services.evaluation.scoring import EvaluationConfig, evaluate
from services.evaluation.working_days import WorkingCalendar

UNITS = load_rulebook(PROJECT_ROOT / "rules").units
PROVIDERS = ("gov_service_bureau", "planning_construction_bureau", "public_utilities_bureau", "zhenglian_company")
STATES = (ItemState.WAITING, ItemState.READY, ItemState.ACCEPTED, ItemState.IN_PROGRESS, ItemState.SUSPENDED,
          ItemState.DELIVERED, ItemState.DELIVERED, ItemState.DELIVERED)


def fill(repo: MemoryLedgerRepository, projects: int, rng: random.Random, calendar: WorkingCalendar) -> None:
    for p in range(projects):
        signed = date(2026, 1, 5) + timedelta(days=rng.randint(0, 300))
        for n in range(25):
            unit = PROVIDERS[n % 4]
            state = rng.choice(STATES)
            ready = signed + timedelta(days=rng.randint(0, 40))
            accepted = ready + timedelta(days=rng.randint(1, 10)) if state not in (ItemState.WAITING, ItemState.READY) else None
            finished = accepted + timedelta(days=rng.randint(2, 30)) if accepted and state is ItemState.DELIVERED else None
            item = LedgerItem(
                key=f"B-{p}/I-{n:02d}", project_code=f"B-{p}", item_code=f"I-{n:02d}", request=Request.HANDLE,
                item_name="事项", stage=list(Stage)[n % 6], mode=ServiceMode.ERRAND if unit == "zhenglian_company"
                else ServiceMode.JOINT, evaluated_as=ServiceMode.ERRAND if unit == "zhenglian_company" else ServiceMode.JOINT,
                evaluator="gov_service_bureau", responsible_unit=unit, approving_authority=unit,
                time_limit_days=rng.choice((1, 3, 5, 10, 20)), state=state, routed_on=signed,
                ready_on=None if state is ItemState.WAITING else ready, accepted_on=accepted, contacted_on=accepted,
                finished_on=finished, delivered_on=finished, task_order_required=unit == "zhenglian_company",
                task_order=TaskOrderRecord(number="T", issued_by="econ_dev_bureau", assigned_to=unit, automatic=False,
                                           issued_on=ready) if unit == "zhenglian_company" and state is not ItemState.WAITING
                else None,
                resume_to=ItemState.IN_PROGRESS if state is ItemState.SUSPENDED else None)
            repo.tables["ledger_items"][item.key] = {"_id": item.key, **item.model_dump(mode="json")}
        for provider in PROVIDERS[:3]:
            moment = datetime(2026, 12, 20, tzinfo=UTC)
            a = Assessment(assessment_id=f"A-{p}-{provider}", project_code=f"B-{p}", provider=provider,
                           rater="enterprise", requested_by="x", year=2026, scores={}, total=rng.uniform(50, 100),
                           bad=False, occurred_at=moment, recorded_at=moment)
            repo.tables["ledger_assessments"][a.assessment_id] = {"_id": a.assessment_id, **a.model_dump(mode="json")}


async def run(projects: int) -> tuple[int, float, float, float]:
    rng = random.Random(projects)
    calendar = WorkingCalendar()
    repo = MemoryLedgerRepository()
    fill(repo, projects, rng, calendar)
    ledger = Ledger(repo, MemoryPublisher(), calendar, EvaluationConfig(), {c: u.name for c, u in UNITS.items()})
    today = date(2026, 12, 31)
    open_items = await repo.open_items()
    started = time.perf_counter()
    for item in open_items:  # the plain alternative: count working days since the start, nothing else
        calendar.working_days_used(item.ready_on or item.routed_on, today)
    bare = time.perf_counter() - started
    started = time.perf_counter()
    await sweep(ledger, today, datetime(2026, 12, 31, 12, tzinfo=UTC))
    swept = time.perf_counter() - started
    items, assessments = await repo.all_items(), await repo.assessments(2026)
    started = time.perf_counter()
    evaluate(2026, items, assessments, ledger.config, UNITS, calendar, today, datetime.now(UTC))
    scored = time.perf_counter() - started
    return len(open_items), bare, swept, scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, nargs="+", default=[50, 100, 200, 400])
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'projects':>8} {'items':>6} {'open':>6} {'bare loop s':>11} {'sweep s':>8} {'sweep/bare':>10} "
          f"{'sweep ms/open item':>18} {'report s':>8} {'report ms/item':>14}")
    for n in args.projects:
        open_count, bare, swept, scored = asyncio.run(run(n))
        print(f"{n:>8} {n * 25:>6} {open_count:>6} {bare:>11.3f} {swept:>8.3f} {swept / bare:>10.1f} "
              f"{1000 * swept / max(open_count, 1):>18.3f} {scored:>8.3f} {1000 * scored / (n * 25):>14.3f}")


if __name__ == "__main__":
    main()
