"""Every read the services and the CLI make is served by an index, on every store this run reaches.

The repositories are driven through all their methods on a client that records each command it
sends (PyMongo's command monitoring), over a few thousand documents; then each recorded filter is
explained on the same server. MongoDB must answer every one with an index scan (``IXSCAN``); the
embedded store (FerretDB on PostgreSQL) with a PostgreSQL index scan, except the one read FerretDB
1.x cannot push down (the report's range over ``routed_on``), which is named here.

The question is whether an index *can* serve each read, not which plan the planner prefers for a
few thousand rows: once autovacuum has analysed a small table, PostgreSQL rightly picks a
sequential scan for a filter that matches a third of it, and the answer would depend on when
autovacuum ran. So on the embedded store the filters are explained through a second FerretDB on
the same PostgreSQL whose sessions set ``enable_seqscan=off``: PostgreSQL then takes an index
wherever one can serve the filter, and still scans the table where none can (the test fails).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pymongo import AsyncMongoClient, monitoring

from services.common.domain import Request, ServiceMode, Unroutable
from services.common.messages import ItemUnroutable, RulesActivated, RulesRejected
from services.common.settings import StoreSettings
from services.common.storage import Endpoint, Store
from services.evaluation.ledger import (
    Assessment,
    Blocker,
    ItemState,
    LedgerItem,
    ProjectRecord,
    RequestOutcome,
    TaskOrderRecord,
    new_item,
    rules_record,
    unroutable_record,
)
from services.evaluation.repository import COLLECTIONS as LEDGER
from services.evaluation.repository import MongoLedgerRepository, item_doc, year_filter
from services.notifier.compose import ItemView, ProjectView
from services.notifier.repository import COLLECTIONS as NOTIFIER
from services.notifier.repository import NotifierRepository
from tests.unit.ledger_kit import CREDIT, at, project, routed

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
FILTERED = {"find": "filter", "findAndModify": "query", "count": "query"}


class Recorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append({"name": event.command_name, "command": dict(event.command)})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def reads(recorded: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(collection, filter, sort) of every filtered read and write the repositories sent."""
    found = []
    for entry in recorded:
        name, command = entry["name"], entry["command"]
        if name in FILTERED:
            found.append((command[name], command.get(FILTERED[name]) or {}, command.get("sort")))
        elif name in ("update", "delete"):
            key = "updates" if name == "update" else "deletes"
            found += [(command[name], op["q"], None) for op in command[key]]
    return found


@contextlib.contextmanager
def index_only_ferretdb(postgres: Mapping[str, Any]) -> Iterator[str]:
    """A second FerretDB on the embedded store's PostgreSQL, its sessions with ``enable_seqscan=off``
    (pgx passes a URL parameter it does not know as a run-time setting); yields its MongoDB URI."""
    with tempfile.TemporaryDirectory(prefix="zeroerrand-explain-") as run:
        sock = Path(run) / "ferretdb.sock"
        url = (f"postgres://{postgres['user']}@/{postgres['dbname']}?host={postgres['host']}&port={postgres['port']}"
               "&enable_seqscan=off")
        process = subprocess.Popen(
            [str(StoreSettings().ferretdb), "--handler=postgresql", f"--postgresql-url={url}", "--listen-addr=",
             f"--listen-unix={sock}", "--debug-addr=-", "--telemetry=disable", f"--state-dir={run}",
             "--log-level=error"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(sock))
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    out = process.stdout.read().decode(errors="replace") if process.poll() is not None and process.stdout else ""
                    pytest.fail(f"the explaining FerretDB did not start: {out}")
                time.sleep(0.05)
            yield f"mongodb://{quote(str(sock), safe='')}"
        finally:
            process.terminate()
            process.wait(10)


@pytest.fixture(params=["embedded", "mongodb"] if StoreSettings().mongodb_url else ["embedded"])
async def recorded_store(request: pytest.FixtureRequest,
                         embedded_endpoint: Endpoint) -> AsyncIterator[tuple[Store, Recorder, Any]]:
    """The store the repositories write and read through (recorded), and the database to explain on."""
    embedded = request.param == "embedded"
    recorder = Recorder()
    uri = embedded_endpoint.uri if embedded else str(StoreSettings().mongodb_url)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True, event_listeners=[recorder])
    store = Store(client, f"zeroerrand_idx_{uuid.uuid4().hex[:10]}", postgres=embedded_endpoint.postgres if embedded else None)
    await store.ensure([*NOTIFIER, *LEDGER])
    with contextlib.ExitStack() as stack:
        explainer: AsyncMongoClient[dict[str, Any]] | None = None
        if embedded:
            assert embedded_endpoint.postgres is not None
            explainer = AsyncMongoClient(stack.enter_context(index_only_ferretdb(embedded_endpoint.postgres)))
        try:
            yield store, recorder, (explainer or client)[store.db.name]
        finally:
            if explainer is not None:
                await explainer.close()
            await client.drop_database(store.db.name)
            await store.close()


def notification(n: int) -> dict[str, Any]:
    return {"_id": f"n-{n:06d}", "event_id": f"event-{n // 3}", "event_type": "item.ready", "project_code": f"P-{n % 150:03d}",
            "item_code": "MA-01", "role": "enterprise", "recipient": f"unit:unit_{n % 40}", "recipient_name": "单位",
            "channel": "webhook" if n % 10 == 0 else "inbox", "address": None, "title": "标题", "body": "正文" * 100,
            "status": ("pending" if n > 2900 else "delivered") if n % 10 == 0 else "unread" if n % 3 == 0 else "delivered",
            "attempts": 0, "last_error": None,
            "created_at": NOW + timedelta(seconds=n), "updated_at": NOW, "delivered_at": None,
            "next_attempt_at": NOW - timedelta(minutes=1) if n % 10 == 0 else None}


async def test_every_read_is_served_by_an_index(recorded_store: tuple[Store, Recorder, Any]) -> None:
    store, recorder, explaining = recorded_store
    embedded = store.embedded
    # a few thousand documents, so that the planner has a table worth an index
    await store.db["notifications"].insert_many([notification(n) for n in range(3000)])
    day = date(2026, 3, 2)
    units = ("planning_construction_bureau", "gov_service_bureau", "public_utilities_bureau", "natural_resources_branch",
             "tax_branch", "zhenglian_company")
    def unit_of(p: int, i: int) -> str:
        return units[(p + i) % len(units)]

    items = [new_item(routed(f"P-{p:03d}", f"X-{i:02d}", day, unit=unit_of(p, i),
                             mode=ServiceMode.ERRAND if unit_of(p, i) == "zhenglian_company" else ServiceMode.JOINT))
             for p in range(150) for i in range(20)]
    items = [i.model_copy(update={"state": ItemState.DELIVERED, "finished_on": day}) if n % 3 else console_state(i, n)
             for n, i in enumerate(items)]
    await store.db["ledger_items"].insert_many([item_doc(i) for i in items])
    await store.db["ledger_projects"].insert_many([
        {"_id": f"Q-{p:04d}", **project_record(f"Q-{p:04d}", units[p % len(units)]).model_dump(mode="json")}
        for p in range(1000)])
    await store.db["ledger_rules_history"].insert_many([
        {"_id": f"rules-{n}", **rules_record(rules_event(n), NOW).model_dump(mode="json")} for n in range(2000)])
    await store.db["ledger_unroutable"].insert_many([
        {"_id": f"unroutable-{n}", **unroutable_record(unroutable_event(n), NOW).model_dump(mode="json")}
        for n in range(3000)])

    recorder.commands.clear()
    notifier = NotifierRepository(store)
    await notifier.add([notification(5000)])
    read_model, _ = notifier.remember(routed("P-001", "X-01", day))
    await notifier.apply(read_model)
    assert await notifier.project("P-001") == ProjectView("P-001", project("P-001").name, project("P-001").enterprise,
                                                          project("P-001").recruiting_unit)
    assert isinstance(await notifier.item("P-001", "X-01"), ItemView)
    assert await notifier.find(project="P-007")
    assert await notifier.find(recipient="unit_3") == await notifier.find(recipient="unit:unit_3")
    assert await notifier.find(status="pending")
    assert await notifier.find(event_id="event-7")
    claimed = await notifier.claim_due(NOW, timedelta(seconds=60))
    assert claimed is not None
    await notifier.delivered(claimed["_id"], 1, NOW)
    await notifier.attempt_failed("n-002990", 1, "timeout", NOW, NOW)
    # the console's reads of an inbox
    assert await notifier.inbox("unit:unit_3", limit=20)
    assert await notifier.inbox("unit:unit_3", project="P-003")
    unread = await notifier.unread_count("unit:unit_3")
    [first] = await notifier.inbox("unit:unit_3", unread_only=True, limit=1)
    assert await notifier.notice(first["_id"], "unit:unit_3") is not None
    assert await notifier.mark_read(first["_id"], "unit:unit_3", NOW)
    assert await notifier.unread_count("unit:unit_3") == unread - 1 > 0

    ledger = MongoLedgerRepository(store)
    first = items[0]
    assert await ledger.item(first.key) == first
    assert len(await ledger.project_items("P-002")) == 20
    assert [i.key for i in await ledger.lines("P-002", "X-03")] == ["P-002/X-03"]
    assert len(await ledger.items([items[0].key, items[25].key])) == 2
    assert len(await ledger.open_items()) == 1000
    assert await ledger.save_item(first.model_copy(update={"state": ItemState.READY, "ready_on": day}), first)
    assert [e["version"] for e in await ledger.journal(first.key)] == [1]  # the items were stored without a journal
    assert len(await ledger.year_items(2026, ["P-003"])) == 3000
    record = ProjectRecord(code="P-001", agreement_id="A", name="项目", enterprise="企业", credit_code=CREDIT,
                           recruiting_unit="econ_dev_bureau", signed_on=day, ledger_owner="econ_dev_bureau", items_planned=1,
                           items_routed=1, items_unroutable=0, rules_version="v", started_at=at(day), recorded_at=at(day))
    await ledger.add_project(record)
    assert await ledger.project("P-001") is not None and await ledger.close_project("P-001", at(day))
    assessment = Assessment(assessment_id="as-1", project_code="P-001", provider="planning_construction_bureau",
                            rater="enterprise", requested_by=CREDIT, year=2026, scores={"notice": 10.0}, total=50,
                            bad=True, rectify_by=day, occurred_at=at(day), recorded_at=at(day))
    assert await ledger.add_assessment(assessment)
    assert await ledger.assessment("as-1") == assessment
    assert await ledger.find_assessment("P-001", "planning_construction_bureau", "enterprise", 2026) == assessment
    assert await ledger.rectify_assessment(assessment.model_copy(update={"rectified_on": day, "rectification": "已整改"}))
    assert len(await ledger.assessments(2026)) == 1
    outcome = RequestOutcome(request_id="req-1", request_type="item.accept", requested_by="x", fingerprint="f",
                             status="pending", request={}, recorded_at=at(day))
    assert await ledger.claim(outcome) == outcome
    await ledger.record_outcome("req-1", "refused", "首问负责")
    assert await ledger.outcome("req-1") is not None and len(await ledger.refused()) == 1
    assert [o.request_id for o in await ledger.outcomes(["req-1", "req-unknown"])] == ["req-1"]

    # what the console and the CLI read (views.py)
    assert len(await ledger.unit_items("tax_branch")) == sum(1 for i in items if i.responsible_unit == "tax_branch"
                                                             and i.is_open)
    assert len(await ledger.unit_items("tax_branch", open_only=False)) == 500
    assert {i.key for i in await ledger.resolver_items("public_utilities_bureau")} == {
        i.key for i in items if any(b.resolver == "public_utilities_bureau" for b in i.open_blockers)}
    assert await ledger.task_order_items(state="to_issue")
    assert await ledger.task_order_items(state="issued", assigned_to="zhenglian_company")
    assert await ledger.task_order_items(assigned_to="zhenglian_company")
    assert await ledger.task_order_items()
    assert len(await ledger.recruiting_unit_projects("tax_branch")) == 166
    assert await ledger.delivered_keys([items[1].key, items[2].key]) == {items[1].key, items[2].key}
    record = rules_record(rules_event(5001), NOW)
    assert await ledger.add_rules_event(record) and not await ledger.add_rules_event(record)
    assert len(await ledger.rules_events("rules.rejected", 10)) == 10
    assert (await ledger.rules_events("rules.activated", 1))[0].event_id == record.event_id
    parked = unroutable_record(unroutable_event(5000), NOW)
    assert await ledger.add_unroutable(parked) and not await ledger.add_unroutable(parked)
    assert len(await ledger.unroutable(2026, 200)) == 200

    # the console's boards and overview (services/console/boards.py, overview.py): a page of open lines by
    # equalities, most urgent first, skipped and limited in the store; a few fields of every open line
    working = {i.key for i in items if i.responsible_unit == "tax_branch" and i.is_open and i.state is not ItemState.WAITING}
    page, total = await ledger.open_lines({"responsible_unit": "tax_branch", "waiting": False}, 0, 10)
    assert total == len(working) > 10 and len(page) == 10 and {i.key for i in page} <= working
    blocked, _ = await ledger.open_lines({"state": "blocked", "level": "red"}, 0, 20)
    assert blocked == []  # no sweep announced anything here
    assert len(await ledger.open_line_fields({}, ("project_code", "level"))) == 1000
    assert [p.code for p in await ledger.projects(["Q-0002", "Q-0001", "Q-none"])] == ["Q-0002", "Q-0001"]
    assert len(await ledger.all_projects()) == 1001  # and P-001, added above

    checked = reads(recorder.commands)
    assert len(checked) >= 40, checked
    unserved = []
    for collection, query, sort in checked:
        if embedded and query == year_filter(2026):
            continue  # FerretDB 1.x pushes no range condition down: the report's one read scans
        if collection == "ledger_projects" and query == {}:
            continue  # the overview's list of the year reads every project record (small: ~1 KB each)
        explain: dict[str, Any] = {"find": collection, "filter": query}
        if sort:
            explain["sort"] = sort
        plan = await explaining.command("explain", explain, verbosity="queryPlanner")
        if not uses_index(plan, embedded):
            unserved.append((collection, query, sort, plan.get("queryPlanner")))
    assert not unserved, "reads without an index:\n" + "\n".join(map(repr, unserved))


def console_state(item: LedgerItem, n: int) -> LedgerItem:
    """An open line as the console's lists see them: some blocked, errand lines with and without orders."""
    if n % 7 == 0:
        blocker = Blocker(id=f"b-{n}", reason="管线迁改", resolver="public_utilities_bureau",
                          reported_by=item.responsible_unit, opened_on=item.routed_on)
        item = item.model_copy(update={"state": ItemState.BLOCKED, "resume_to": ItemState.ACCEPTED, "blockers": (blocker,)})
    elif item.task_order_required and n % 2 == 0:
        return item.model_copy(update={"state": ItemState.READY, "ready_on": item.routed_on})
    if item.task_order_required:
        item = item.model_copy(update={"task_order": TaskOrderRecord(
            number=f"RWD-{n}", issued_by="econ_dev_bureau", assigned_to=item.responsible_unit, automatic=False,
            issued_on=item.routed_on)})
    return item


def project_record(code: str, recruiting_unit: str) -> ProjectRecord:
    day = date(2026, 3, 2)
    return ProjectRecord(code=code, agreement_id=f"A-{code}", name="项目", enterprise="企业", credit_code=CREDIT,
                         recruiting_unit=recruiting_unit, signed_on=day, ledger_owner="econ_dev_bureau", items_planned=26,
                         items_routed=26, items_unroutable=0, rules_version="v", started_at=at(day), recorded_at=at(day))


def rules_event(n: int) -> RulesActivated | RulesRejected:
    when = NOW + timedelta(minutes=n)
    if n % 10 == 0:
        return RulesRejected(event_id=f"rules-{n}", occurred_at=when, recorded_at=when, attempted_version=f"v{n}",
                             active_version=f"v{n - 1}", directory="rules", problems=("routing.yaml:3 [r] 未知单位",))
    return RulesActivated(event_id=f"rules-{n}", occurred_at=when, recorded_at=when, version=f"v{n}",
                          previous_version=f"v{n - 1}", directory="rules", rules=40, items=25)


def unroutable_event(n: int) -> ItemUnroutable:
    when = datetime(2024 + n % 3, 6, 1, tzinfo=UTC) + timedelta(minutes=n)
    return ItemUnroutable(
        event_id=f"unroutable-{n}", occurred_at=when, recorded_at=when, item_id=f"i-{n}", agreement_id="A",
        project_code=f"P-{n % 150:03d}", project_name="项目", recruiting_unit="econ_dev_bureau", item_code="ZZ-99",
        item_name=None, request=Request.HANDLE,
        unroutable=Unroutable(reason_code="unknown_item", reason="清单中没有 ZZ-99", rules_version="v",
                              facts={"item.code": "ZZ-99"}, decided_at=when))


def uses_index(plan: Any, embedded: bool) -> bool:
    """Whether an explain output shows an index scan: PostgreSQL's node types under FerretDB,
    MongoDB's ``IXSCAN``/``IDHACK``/``EXPRESS`` stages."""
    wanted = ("Index Scan", "Bitmap Index Scan", "Index Only Scan") if embedded else ("IXSCAN", "IDHACK", "EXPRESS_IXSCAN")
    key = "Node Type" if embedded else "stage"

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get(key) in wanted or any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(plan.get("queryPlanner"))
