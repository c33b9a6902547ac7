"""Runs the demo year on the system: the services of ``zeroerrand up`` (or its own, in the background),
the real broker and the store.

Day by day, from 1 January to the last day simulated (31 December, or yesterday for the current
year): the day's agreements are signed (back-filled, 补录, so their items count as routed that day)
and, once the ledger holds their lines, scripted (``simulation``); the day's requests go to the
ledger together and the next day starts when the ledger has settled every one of them (applied
or refused); every Friday and on the last day the overdue sweep runs as of that day. Then the
测评 of the year and the rectifications of the 差评, and the annual report of ``zeroerrand report``.

Every id is derived from the seed, so running the same demo again changes nothing (the router,
the ledger and the notifier recognise what they have seen), and a demo stopped half-way is
finished by running it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from faststream.rabbit import RabbitQueue

from services.common.bus import BrokerPublisher, Outgoing, make_broker, request_out
from services.common.domain import NEW_AREA_TIME, YEAR_MIN
from services.common.embedded_store import die_with_parent
from services.common.messages import AgreementSigned, Command
from services.common.operations import queue_states
from services.common.rule_files import RuleBook, load_rulebook
from services.common.settings import BrokerSettings, StoreSettings
from services.common.storage import store_session
from services.common.topology import (
    AGREEMENT_SIGNED,
    AGREEMENTS,
    EVALUATION_QUEUE,
    LEDGER_REQUESTS_QUEUE,
    NOTIFIER_QUEUE,
    ROUTER_QUEUE,
    declare_topology,
)
from services.demo.agreements import working_days_of, year_of_agreements
from services.demo.simulation import ProjectScript, Step, assessments_for, rectifications_for, script_project
from services.evaluation import handlers
from services.evaluation.app import ledger_on, read_rules
from services.evaluation.holiday_file import load_calendar
from services.evaluation.ledger import local_day
from services.evaluation.report import summary_table, write_report
from services.evaluation.repository import COLLECTIONS, LedgerRepository, MongoLedgerRepository
from services.evaluation.scoring import evaluate_year
from services.evaluation.views import request_outcomes
from services.evaluation.working_days import WorkingCalendar

SERVICE_QUEUES: dict[str, RabbitQueue] = {
    "路由服务 router": ROUTER_QUEUE, "通知服务 notifier": NOTIFIER_QUEUE,
    "评价服务 evaluation（事件）": EVALUATION_QUEUE, "评价服务 evaluation（请求）": LEDGER_REQUESTS_QUEUE,
}
START_TIMEOUT_S = 120.0
SETTLE_TIMEOUT_S = 300.0  # one day's requests not settled by then: the ledger is stuck, say so
# how often a day looks whether the ledger has settled it: a day of the demo waits for its answers,
# so a coarse poll adds its own latency to each of the year's 365 days (look-ups by id are cheap)
DAY_POLL_S = 0.01


class DemoError(RuntimeError):
    """The demo cannot go on; the message (Chinese) says why and what to do."""


@dataclass(frozen=True)
class DemoOptions:
    projects: int
    year: int
    seed: int
    out: Path
    rules_dir: Path


@dataclass
class DemoFigures:
    """What the demo did, for the closing summary."""

    signed: int = 0
    lines: int = 0
    unroutable: int = 0
    requests: Counter[str] = field(default_factory=Counter)  # by outcome: applied / refused (a replay: as first)
    refusals: list[str] = field(default_factory=list)
    blocked: int = 0
    suspended: int = 0
    late: int = 0
    delivered: int = 0
    overdue_notices: int = 0
    assessments: int = 0
    bad: int = 0
    rectified: int = 0
    started_services: bool = False
    drained: bool = False  # the notifier had stored everything when the demo ended
    last_day: date | None = None
    report_files: list[Path] = field(default_factory=list)
    summary: str = ""


class Phases:
    """How the run reports progress: a phase starts with a total, advances, ends (``cli`` draws it)."""

    def start(self, name: str, total: int) -> None: ...
    def advance(self, steps: int = 1, note: str = "") -> None: ...
    def end(self) -> None: ...
    def say(self, text: str) -> None: ...


def last_day_of(year: int, today: date) -> date:
    """The last day the demo simulates: the year's end, or yesterday for the current year."""
    if year > today.year:
        raise DemoError(f"{year} 年尚未到来：演示只能模拟今年（{today.year}）或以前的年度")
    if year < YEAR_MIN:
        raise DemoError(f"演示只能模拟 {YEAR_MIN} 年及以后的年度（台账记录的日期范围），而不是 {year} 年")
    if year == today.year:
        if today <= date(year, 1, 5):
            raise DemoError(f"{year} 年才刚开始，没有可模拟的日子：请用 --year {year - 1}")
        return today - timedelta(days=1)
    return date(year, 12, 31)


async def _queue_counts(broker: Any) -> dict[str, tuple[int, int]]:
    """(consumers, messages ready) of each service's queue, on the demo's own connection."""
    states = await queue_states(broker._connection, [q.name for q in SERVICE_QUEUES.values()])
    return {name: states[q.name] or (0, 0) for name, q in SERVICE_QUEUES.items()}


async def _consumers(broker: Any) -> dict[str, int]:
    return {name: consumers for name, (consumers, _) in (await _queue_counts(broker)).items()}


async def drained(broker: Any, timeout_s: float = SETTLE_TIMEOUT_S) -> bool:
    """Waits until no service has a message waiting (seen twice, a second apart): the notifier has
    stored every notification of the demo. False if that takes longer than ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    empty_before = False
    while loop.time() < deadline:
        empty = not any(ready for _, ready in (await _queue_counts(broker)).values())
        if empty and empty_before:
            return True
        empty_before = empty
        await asyncio.sleep(1.0)
    return False


@contextlib.asynccontextmanager
async def services_running(broker: Any, log_file: Path, figures: DemoFigures,
                           say: Callable[[str], None] = print) -> AsyncIterator[None]:
    """Uses the services of a running ``zeroerrand up`` if every one consumes; starts them in the
    background (``zeroerrand up --no-console``, log in ``log_file``) if none does, and stops them at
    the end; refuses to go on with only some of them."""
    counts = await _consumers(broker)
    if all(counts.values()):
        say("使用正在运行的服务（zeroerrand up）")
        yield
        return
    if any(counts.values()):
        missing = "、".join(name for name, n in counts.items() if not n)
        raise DemoError(f"只有部分服务在运行（没有消费者：{missing}）：请先停止它们或用 zeroerrand up 全部启动，再运行演示")
    say(f"没有正在运行的服务：在后台启动 zeroerrand up --no-console（日志 {log_file}），演示结束时停止")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ,
           # the demo sweeps for overdue items itself, as of each simulated day; the service's own
           # sweep would judge the simulated items by today's date (even once, at its start)
           "ZEROERRAND_EVALUATION_SWEEP": "false"}
    with log_file.open("ab") as log:
        # its own session, so a Ctrl-C goes to the demo, which stops it; and stopped by the kernel
        # if the demo is killed outright, so that no demo leaves services behind
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--no-console"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            preexec_fn=lambda: die_with_parent(signal.SIGTERM))
    figures.started_services = True
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while not all((await _consumers(broker)).values()):
            if process.poll() is not None:
                tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
                raise DemoError("后台启动服务失败（退出码 {}），日志 {} 的最后几行：\n{}".format(
                    process.returncode, log_file, "\n".join(tail)))
            if loop.time() > deadline:
                raise DemoError(f"后台服务 {START_TIMEOUT_S:g} 秒内没有全部开始消费，见日志 {log_file}")
            await asyncio.sleep(0.5)
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)


class _Ledger:
    """The demo's side of the ledger: requests sent in batches, and waiting until they are settled."""

    def __init__(self, repo: LedgerRepository, publisher: BrokerPublisher, figures: DemoFigures) -> None:
        self.repo, self.publisher, self.figures = repo, publisher, figures

    async def send(self, commands: Sequence[Command]) -> None:
        if not commands:
            return
        await self.publisher.publish_all([request_out(c) for c in commands])
        answers = await request_outcomes(self.repo, [c.request_id for c in commands], SETTLE_TIMEOUT_S, poll_s=DAY_POLL_S)
        found = [o for o in answers.values() if o is not None]
        if len(found) < len(answers):
            raise DemoError(f"台账 {SETTLE_TIMEOUT_S:g} 秒内只处理了 {len(found)}/{len(answers)} 个请求：评价服务是否在运行？"
                            "（zeroerrand ledger show 可查看台账，被拒绝的见 zeroerrand ledger requests）")
        for outcome in found:
            self.figures.requests[outcome.status] += 1
            if outcome.status == "refused" and outcome.reason:
                self.figures.refusals.append(f"{outcome.request_type}: {outcome.reason}")

    async def routed(self, agreement: AgreementSigned) -> list[Any]:
        """The project's ledger lines, once the ledger holds every routed one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_TIMEOUT_S
        while loop.time() < deadline:
            project = await self.repo.project(agreement.project.code)
            if project is not None:
                items = await self.repo.project_items(project.code)
                if len(items) >= project.items_routed:
                    self.figures.unroutable += project.items_unroutable
                    return items
            await asyncio.sleep(DAY_POLL_S)
        raise DemoError(f"协议 {agreement.agreement_id} 签约后 {SETTLE_TIMEOUT_S:g} 秒内台账没有收到全部事项："
                        "路由服务是否在运行？")


async def run_demo(options: DemoOptions, phases: Phases, today: date | None = None) -> DemoFigures:
    """The whole demo: see the module's docstring. ``DemoError`` when it cannot go on."""
    figures = DemoFigures()
    now = datetime.now(UTC)
    today = today or local_day(now)
    end = last_day_of(options.year, today)
    book: RuleBook = load_rulebook(options.rules_dir)
    rules = read_rules(options.rules_dir)
    config = rules[0]
    calendar = load_calendar(options.rules_dir)
    signing_days = working_days_of(options.year, end - timedelta(days=14), calendar) or [date(options.year, 1, 5)]
    agreements = year_of_agreements(book, options.year, options.projects, options.seed, signing_days)
    broker_settings = BrokerSettings()
    store_settings = StoreSettings()

    phases.start("准备：连接消息队列与存储，检查服务", 1)
    broker = make_broker(broker_settings, name="demo")
    async with store_session(store_settings, collections=COLLECTIONS) as store, broker:
        await broker.connect()
        await declare_topology(broker)
        phases.end()
        async with services_running(broker, store_settings.data_dir / "demo-services.log", figures,
                                    phases.say):
            repo = MongoLedgerRepository(store)
            publisher = BrokerPublisher(broker)
            ledger = _Ledger(repo, publisher, figures)
            sweeper = ledger_on(store, publisher, rules, calendar)
            await _simulate_year(options, agreements, end, calendar, book, config, ledger, sweeper, phases, figures)
            await _assess(options, agreements, end, config, ledger, repo, phases, figures)
            phases.start("等待通知服务处理完全部事件", 1)
            figures.drained = await drained(broker)
            phases.end()
            phases.start("年度报告", 1)
            # read on today, as the console and ``zeroerrand report`` do (the last simulated day is
            # yesterday for the current year; a clock that passes its limit today counts in all three)
            report = await evaluate_year(repo, options.year, config, book.units, calendar, today, datetime.now(UTC))
            figures.report_files = write_report(report, options.out)
            figures.summary = summary_table(report)
            phases.advance()
            phases.end()
    return figures


async def _simulate_year(options: DemoOptions, agreements: Sequence[AgreementSigned], end: date,
                         calendar: WorkingCalendar, book: RuleBook, config: Any, ledger: _Ledger, sweeper: Any,
                         phases: Phases, figures: DemoFigures) -> None:
    by_day: dict[date, list[AgreementSigned]] = defaultdict(list)
    for agreement in agreements:
        by_day[agreement.signed_on].append(agreement)
    agenda: dict[date, list[Step]] = defaultdict(list)
    first = date(options.year, 1, 1)
    days = (end - first).days + 1
    phases.start(f"模拟 {options.year} 年：签约、办理、堵点、中止、超时", days)
    for offset in range(days):
        day = first + timedelta(days=offset)
        signed = by_day.get(day, [])
        if signed:
            await ledger.publisher.publish_all(
                [Outgoing(AGREEMENTS, AGREEMENT_SIGNED, a, a.event_id, a.type) for a in signed])
            for agreement in signed:
                items = await ledger.routed(agreement)
                script: ProjectScript = script_project(agreement, items, end, calendar, config, options.seed,
                                                       tuple(book.units))
                for step in script.steps:
                    agenda[step.day].append(step)
                figures.signed += 1
                figures.lines += len(items)
                figures.blocked += script.blocked
                figures.suspended += script.suspended
                figures.late += script.late
                figures.delivered += script.handed_over
        await ledger.send([s.command for s in agenda.pop(day, [])])
        if day.weekday() == 4 or day == end:
            moment = datetime.combine(day, datetime.max.time(), NEW_AREA_TIME).astimezone(UTC)
            figures.overdue_notices += len(await handlers.sweep(sweeper, day, min(moment, datetime.now(UTC))))
        figures.last_day = day
        phases.advance(note=f"{day} 已签约 {figures.signed} 个项目，请求 {sum(figures.requests.values())} 个")
    phases.end()


async def _assess(options: DemoOptions, agreements: Sequence[AgreementSigned], end: date, config: Any,
                  ledger: _Ledger, repo: LedgerRepository, phases: Phases, figures: DemoFigures) -> None:
    phases.start("综合测评与差评整改", len(agreements) + 1)
    commands = []
    for agreement in agreements:
        items = await repo.project_items(agreement.project.code)
        commands.extend(assessments_for(agreement, items, options.year, end, config, options.seed))
        phases.advance()
    await ledger.send(commands)
    submitted = {c.request_id for c in commands}
    stored = [a for a in await repo.assessments(options.year) if a.assessment_id in submitted]
    figures.assessments = len(stored)
    bad = [a for a in stored if a.bad]
    figures.bad = len(bad)
    rectifications = rectifications_for(bad, end, options.seed)
    await ledger.send(rectifications)
    figures.rectified = len(rectifications)
    phases.advance()
    phases.end()

