"""A simulated year: 220 projects signed through 2026, items that wait for each other, units that
answer on time (all but one), suspensions, task orders, weekly sweeps, and the year's 测评 given by
raters who judge what the ledger itself measured. Fixed seed; the fakes of the store and the broker."""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader

from services.cli.ledger import _line as ledger_line
from services.common.domain import ServiceMode, Stage
from services.common.messages import (
    AcceptItem,
    AcceptTaskOrder,
    AssessmentRectificationOverdue,
    CompleteItem,
    ContactEnterprise,
    DeliverResults,
    IssueTaskOrder,
    ItemOverdue,
    ItemReady,
    ResumeItem,
    SubmitAssessment,
    SuspendItem,
)
from services.evaluation.handlers import handle, sweep
from services.evaluation.ledger import CLOCK_NAMES_ZH, LEVELS, ItemState, clock_readings
from services.evaluation.scoring import EvaluationConfig, active_in, evaluate
from services.evaluation.views import ViewContext, item_row
from tests.unit.ledger_kit import CREDIT, UNIT_NAMES, UNITS, at, ledger, request, routed, started

TEMPLATES = Path(__file__).parents[2] / "services" / "console" / "templates"

SLOPPY = "public_utilities_bureau"  # answers late and finishes past the limit; everyone else is punctual
# code: (unit, mode, limit, requires, stage)
CHAIN: dict[str, tuple[str, ServiceMode, int, tuple[str, ...], Stage]] = {
    "MA-01": ("gov_service_bureau", ServiceMode.ASSIST, 1, (), Stage.MARKET_ACCESS),
    "PL-01": ("gov_service_bureau", ServiceMode.ASSIST, 1, ("MA-01",), Stage.PROJECT_LAND_PLANNING),
    "PL-04": ("zhenglian_company", ServiceMode.ERRAND, 10, ("MA-01",), Stage.PROJECT_LAND_PLANNING),
    "PL-05": ("planning_construction_bureau", ServiceMode.JOINT, 5, ("PL-01", "PL-04"), Stage.PROJECT_LAND_PLANNING),
    "EP-02": ("planning_construction_bureau", ServiceMode.JOINT, 5, ("PL-05",), Stage.ENGINEERING_PERMIT),
    "CP-03": (SLOPPY, ServiceMode.JOINT, 5, ("EP-02",), Stage.CONSTRUCTION_PERMIT),
    "CA-03": ("planning_construction_bureau", ServiceMode.JOINT, 10, ("CP-03", "EP-02"), Stage.COMPLETION_ACCEPTANCE),
}
PROJECTS = 220


class Simulation:
    projects = PROJECTS

    def __init__(self, seed: int, config: EvaluationConfig) -> None:
        self.rng = random.Random(seed)
        self.book = ledger(config)
        self.calendar = self.book.calendar
        self.service_days = config.service_response_days
        self.queue: list[tuple[date, int, Callable[[date], Any]]] = []
        self.seq = itertools.count()
        self.seen = 0
        self.overdue: list[tuple[ItemOverdue, ItemState]] = []
        self.reminders: list[AssessmentRectificationOverdue] = []  # 差评 not rectified by their deadline
        self.refused: list[Any] = []

    def at_day(self, day: date, action: Callable[[date], Any]) -> None:
        heapq.heappush(self.queue, (day, next(self.seq), action))

    def workday(self, start: date, days: int) -> date:
        return self.calendar.add_working_days(start, days) if days else start

    async def send(self, message: Any, day: date) -> None:
        outcome = await handle(message, self.book, at(day, 18))
        if outcome == "refused":
            self.refused.append([o.message for o in self.book.publisher.sent][-1])
        await self.follow()

    async def follow(self) -> None:
        """Units act on what the ledger announces: a ready item gets its plan of work."""
        sent = self.book.publisher.sent  # type: ignore[attr-defined]
        new, self.seen = sent[self.seen:], len(sent)
        for out in new:
            if isinstance(out.message, ItemReady):
                item = await self.book.repo.item(f"{out.message.project_code}/{out.message.item_code}")
                assert item is not None and item.ready_on is not None
                self.plan_work(item.project_code, item.item_code, item.ready_on)

    def plan_work(self, project: str, code: str, ready: date) -> None:
        unit, mode, limit, _, _ = CHAIN[code]
        late = unit == SLOPPY
        ask = {"project_code": project, "item_code": code}
        start = ready
        if mode is ServiceMode.ERRAND:  # 经发局 issues the order the next working day; 政联公司 accepts it
            start = self.workday(ready, 1)
            self.at_day(start, lambda d: self.send(request(IssueTaskOrder, d, "econ_dev_bureau", **ask), d))
            self.at_day(start, lambda d: self.send(request(AcceptTaskOrder, d, unit, specialist_name="专员",
                                                           specialist_phone="13800000000", **ask), d))
        contact = self.workday(start, self.service_days + 2 if late else self.rng.randint(0, self.service_days - 1))
        self.at_day(contact, lambda d: self.send(request(ContactEnterprise, d, unit, **ask), d))
        accept = contact + timedelta(days=self.rng.randint(0, 12))  # the enterprise prepares its materials
        self.at_day(accept, lambda d: self.send(request(AcceptItem, d, unit, **ask), d))
        used = limit + 3 if late else self.rng.randint(1, max(1, limit - 1))
        finish_from = accept
        if limit >= 3 and self.rng.random() < 0.25:  # 补正: suspended the next working day for a few days
            suspend = self.workday(accept, 1)
            resume = suspend + timedelta(days=self.rng.randint(3, 9))
            self.at_day(suspend, lambda d: self.send(request(SuspendItem, d, unit, reason="补正材料", **ask), d))
            self.at_day(resume, lambda d: self.send(request(ResumeItem, d, unit, **ask), d))
            finish_from, used = resume, used - 1
        done = self.workday(finish_from, used)
        self.at_day(done, lambda d: self.send(request(CompleteItem, d, unit, **ask), d))
        self.at_day(done, lambda d: self.send(request(DeliverResults, d, unit, results=(f"{code} 批文",), **ask), d))

    def sign(self, project: str, day: date) -> None:
        planned = [c for c in CHAIN if c not in ("PL-04", "PL-01") or self.rng.random() < 0.8]

        async def go(d: date) -> None:
            await handle(started(project, d), self.book, at(d, 9))
            for code in planned:
                unit, mode, limit, requires, stage = CHAIN[code]
                await handle(routed(project, code, d, unit=unit, mode=mode, limit=limit, stage=stage,
                                    requires=tuple(r for r in requires if r in planned)), self.book, at(d, 9))
            await self.follow()
        self.at_day(day, go)

    async def weekly_sweep(self, day: date) -> None:
        await self.swept(day, await sweep(self.book, day, at(day, 20)))

    async def swept(self, day: date, events: list[Any]) -> None:
        self.reminders += [e for e in events if isinstance(e, AssessmentRectificationOverdue)]
        for event in events:
            if isinstance(event, AssessmentRectificationOverdue):  # a 差评 its unit did not rectify in time
                continue
            assert isinstance(event, ItemOverdue)
            item = await self.book.repo.item(f"{event.project_code}/{event.item_code}")
            assert item is not None
            self.overdue.append((event, item.state))
        await self.follow()
        if day < date(2027, 6, 1):
            self.at_day(day + timedelta(days=7), self.weekly_sweep)

    async def assess(self, day: date) -> None:
        """Raters judge each provider of each project by what the ledger measured for it."""
        items = await self.book.repo.all_items()
        by_pair: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for item in items:
            by_pair[(item.project_code, item.responsible_unit)].append(item)
        for (project, provider), served in sorted(by_pair.items()):
            if all(i.state is ItemState.WAITING for i in served):
                continue  # nothing done for the project yet this year
            readings = [r for i in served for r in clock_readings(i, self.calendar, day, self.service_days).values()]
            total = 95.0 if not any(r.late for r in readings) else 55.0
            scores = {i.code: i.points * total / 100 for i in self.book.config.questionnaire}
            for rater, by in (("enterprise", CREDIT), ("recruiting_unit", "econ_dev_bureau")):
                await self.send(request(SubmitAssessment, day, by, project_code=project, provider=provider, rater=rater,
                                        year=2026, scores=scores), day)

    async def run(self) -> None:
        for n in range(self.projects):
            self.sign(f"SIM-{n:03d}", date(2026, 1, 5) + timedelta(days=self.rng.randint(0, 300)))
        self.at_day(date(2026, 1, 5), self.weekly_sweep)
        self.at_day(date(2026, 12, 21), self.assess)
        while self.queue:
            day, _, action = heapq.heappop(self.queue)
            await action(day)


async def simulate(seed: int, config: EvaluationConfig) -> Simulation:
    simulation = Simulation(seed, config)
    await simulation.run()
    return simulation


async def test_a_simulated_year_is_fair_to_units_that_answer_on_time() -> None:
    config = EvaluationConfig(service_response_days=2)
    sim = await simulate(2026, config)
    items = await sim.book.repo.all_items()
    assert len({i.project_code for i in items}) == PROJECTS and len(items) > 1300
    assert sim.refused == []  # every unit asked only what it may, when it may
    assert all(i.state is ItemState.DELIVERED for i in items)  # the chain always completes
    # nothing is ever overdue while it waits for another item
    assert sim.overdue and all(state is not ItemState.WAITING for _, state in sim.overdue)
    # a punctual unit may see a warning or, on the due day itself, a yellow card; never a red one
    reds = {(e.project_code, e.item_code) for e, _ in sim.overdue if e.level == "red"}
    assert reds and {code for _, code in reds} == {"CP-03"}
    report = evaluate(2026, items, await sim.book.repo.assessments(2026), config, UNITS, sim.calendar,
                      date(2026, 12, 31), at(date(2026, 12, 31)))
    status = {s.provider: s.status for s in report.scores}
    assert status == {"gov_service_bureau": "合格", "planning_construction_bureau": "合格",
                      "zhenglian_company": "合格", SLOPPY: "不合格"}
    assert [s.provider for s in report.exit_list] == [SLOPPY]
    timely = {s.provider: (s.service_late, s.statutory_late) for s in report.scores}
    assert timely["planning_construction_bureau"] == (0, 0) and timely["zhenglian_company"] == (0, 0)
    # nobody rectifies here: each 差评 is announced once, by the first weekly sweep after its deadline
    bad = [a for a in await sim.book.repo.assessments(2026) if a.bad]
    assert bad and sorted(r.assessment_id for r in sim.reminders) == sorted(a.assessment_id for a in bad)
    assert all(r.evaluators for r in sim.reminders)


async def test_the_same_year_with_ledger_figures_weighted_still_passes_every_punctual_unit() -> None:
    config = EvaluationConfig(service_response_days=2, reference_weights={
        "service_on_time": 0.2, "statutory_on_time": 0.2, "rectification": 0.0})
    sim = await simulate(7, config)
    items = await sim.book.repo.all_items()
    report = evaluate(2026, items, await sim.book.repo.assessments(2026), config, UNITS, sim.calendar,
                      date(2026, 12, 31), at(date(2026, 12, 31)))
    assert {s.provider for s in report.scores if s.status == "合格"} == {
        "gov_service_bureau", "planning_construction_bureau", "zhenglian_company"}
    assert [s.provider for s in report.exit_list] == [SLOPPY]


class Supervised(Simulation):
    """The same year, read after every sweep as 电子监察 staff read it: the level each open line's
    running clock stands at (views: the console's board and ``zeroerrand ledger show``) must be the
    highest level the sweep has announced for that clock (the ledger), and no higher one announced."""

    projects = 80

    def __init__(self, seed: int, config: EvaluationConfig) -> None:
        super().__init__(seed, config)
        self.ctx = ViewContext(unit_names=UNIT_NAMES, calendar=self.calendar, service_response_days=config.service_response_days,
                               today=date(2026, 1, 1), cards=config.cards, task_order_days=config.task_order_issue_days)
        self.checked: Counter[str] = Counter()
        self.console = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True).get_template("_macros.html").module

    async def swept(self, day: date, events: list[Any]) -> None:
        await super().swept(day, events)
        ctx = replace(self.ctx, today=day)
        for item in await self.book.repo.open_items():
            row = item_row(item, ctx)
            announced = [s.split(":")[1] for s in item.overdue_sent if s.startswith(f"{row.running_clock}:")]
            highest = max(announced, key=LEVELS.index) if announced else None
            assert row.level == highest, (day, item.key, row.level, item.overdue_sent)
            line = ledger_line(row)  # the CLI
            shown = str(self.console.level(row))  # the console's board
            if row.level is None:
                assert "【" not in line and "level" not in shown
            else:
                assert f"【{CLOCK_NAMES_ZH[row.running_clock or '']}{row.level_name}】" in line
                assert f'class="level {row.level}"' in shown and str(row.level_name) in shown
            self.checked[row.level or "none"] += 1


async def test_cli_console_ledger_and_report_agree_on_cards_and_lateness_over_a_simulated_year() -> None:
    config = EvaluationConfig(service_response_days=2, warning_days=1, red_card_ratio=1.5)
    sim = Supervised(2027, config)
    await sim.run()
    assert sim.refused == []
    assert all(sim.checked[level] for level in ("none", "warning", "yellow", "red")), sim.checked
    # the report's 超时 figures are the clocks the board and the CLI show late, on the report's day
    last = date(2026, 12, 31)
    items = await sim.book.repo.all_items()
    report = evaluate(2026, items, await sim.book.repo.assessments(2026), config, UNITS, sim.calendar, last,
                      at(last), recruiters={})
    ctx = replace(sim.ctx, today=last)
    shown: dict[tuple[str, ServiceMode], list[int]] = defaultdict(lambda: [0, 0, 0])
    for item in items:
        if not active_in(item, 2026):
            continue
        row = item_row(item, ctx)
        for clock in row.clocks:
            if clock.clock != "statutory" or (clock.running and not clock.late):
                continue  # running within its limit: neither on time nor late yet
            counts = shown[(item.responsible_unit, item.evaluated_as)]
            counts[2 if clock.running else 1 if clock.late else 0] += 1  # 超时未办结, 超时办结, 按时办结
    figures = {(s.provider, s.mode): [s.statutory_on_time, s.statutory_late, s.statutory_open_late]
               for s in report.scores}
    assert figures == {key: counts for key, counts in shown.items() if key in figures}
    assert sum(f[1] + f[2] for f in figures.values()) > 0  # the sloppy unit is late, and it shows
