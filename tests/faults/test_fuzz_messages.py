"""Fuzzing every consumed message type against the real RabbitMQ (a private vhost) and the real
embedded store, with the router, the notifier and the evaluation service running in-process.

Hypothesis draws the messages (fixed seeds: ``derandomize=True``), good and bad mixed:
``agreement.signed`` to the router; every event type of ``AnyEvent`` on ``zeroerrand.events`` (the
notifier's and the ledger's queues); every request of ``AnyCommand`` on ``zeroerrand.requests``.
Bad ones: not JSON, missing, wrong or unknown fields, the wrong AMQP type, oversize bodies, dates
outside 2000–2100, overlong strings, control characters, events from an untrusted publisher; and
the impossible requests once accepted (delivering an item never completed, a 测评 of ``no_such_unit``
or of an unknown project, a blocker naming an unknown resolver).

What must hold: every bad message is parked on the right dead-letter queue with a specific reason,
or refused by the ledger with its reason; every good one is processed; impossible requests record
nothing and notify no one but their sender (of the refusal); no service dies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import aio_pika
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.common.consuming import decode_event
from services.common.domain import Request
from services.common.messages import (
    AgreementAmended,
    AnyEvent,
    RoutedItem,
    ServiceStarted,
    stable_id,
)
from services.common.rule_files import load_rulebook
from services.common.settings import (
    MAX_AGREEMENT_BYTES,
    MAX_EVENT_BYTES,
    MAX_REQUEST_BYTES,
    BrokerSettings,
    EvaluationSettings,
    NotifierSettings,
    RouterSettings,
)
from services.common.storage import Store
from services.common.topology import EVALUATION_QUEUE, LEDGER_REQUESTS_QUEUE, NOTIFIER_QUEUE, ROUTER_QUEUE
from services.evaluation.app import Evaluation, create_evaluation
from services.evaluation.ledger import item_key
from services.evaluation.repository import MongoLedgerRepository
from services.notifier.app import Notifier, create_notifier, load_composer
from services.notifier.compose import MissingContext
from services.notifier.handlers import views_of
from services.notifier.repository import NotifierRepository
from services.router.app import Router, create_router
from tests.conftest import ALUMINIUM, RULES, example

# the integration fixtures, by their names (tests/faults has no conftest of its own yet)
from tests.integration.conftest import (  # noqa: F401
    Tap,
    _rabbitmqctl,
    amqp,
    amqp_url,
    clean_queues,
    embedded_endpoint,
    queue_depth,
    store,
    tap,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]  # the whole system, every message type

BOOK = load_rulebook(RULES)
UNITS = sorted(BOOK.units)
CATALOG = sorted(BOOK.catalog)
EVENT_TYPES = sorted(t.model_fields["type"].default for t in get_args(get_args(AnyEvent)[0]))
COMMAND_TYPES = ("item.contact", "item.accept", "item.report_progress", "item.report_blocker", "item.enterprise_issue",
                 "item.resolve_blocker",
                 "item.suspend", "item.resume", "item.complete", "item.deliver", "task_order.issue",
                 "task_order.accept", "assessment.submit", "assessment.rectify", "item.reroute")
FULL_SCORES = {"responsiveness": 20, "notice": 20, "efficiency": 25, "attitude": 15, "free_of_charge": 10,
               "delivery": 10}
NOTIFIER_DEAD, LEDGER_DEAD = NOTIFIER_QUEUE.name, EVALUATION_QUEUE.name

# -- drawing examples with fixed seeds ----------------------------------------------------------


def drawn(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """``count`` examples of ``strategy``, the same on every run (derandomized, no example database)."""
    found: list[Any] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return found


# printable text people type: CJK, Latin letters and digits, some punctuation (never a control character)
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x2FFFF, blacklist_categories=("Cs", "Cc", "Co", "Cn"))
WORDS = st.text(PRINTABLE, min_size=1, max_size=30).filter(lambda s: s.strip() != "")
CONTROL = st.sampled_from(["\x00", "\x07", "\x1b", "\x7f", "\n"])
DAY_IN_WINDOW = st.dates(date(2000, 1, 1), date(2100, 12, 31))
YEAR_OUTSIDE = st.one_of(st.integers(1, 1999), st.integers(2101, 9999))


def json_body(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


@dataclass
class Case:
    """One published message and what must become of it."""

    label: str
    body: bytes
    routing_key: str
    exchange: str
    message_id: str = field(default_factory=lambda: f"fuzz-{uuid.uuid4().hex[:12]}")
    amqp_type: str | None = None
    user_id: str | None = "guest"
    parked_as: str | None = None  # the error kind it is parked with; None: it is good
    reason_has: tuple[str, ...] = ()  # what the parked reason must name

    @property
    def bad(self) -> bool:
        return self.parked_as is not None


def not_json() -> st.SearchStrategy[bytes]:
    def broken(raw: bytes) -> bytes:
        try:
            json.loads(raw)
        except ValueError:
            return raw
        return b"{" + raw
    return st.binary(max_size=80).map(broken)


def set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(data))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def drop_path(data: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    copy = json.loads(json.dumps(data))
    target = copy
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return copy


CORRUPTIONS = ("not_json", "not_object", "missing", "wrong_type", "extra", "date", "overlong", "control", "oversize")


def corrupted(good: dict[str, Any], required: list[tuple[str, ...]], text_field: tuple[str, ...],
              date_field: tuple[str, ...], date_kind: str, limit: int,
              per_kind: int) -> list[tuple[str, bytes, str, tuple[str, ...]]]:
    """``per_kind`` drawn bad variants of ``good`` for each way of corrupting it."""
    return [variant for how in CORRUPTIONS for variant in drawn(
        corruption(good, required, text_field, date_field, date_kind, limit, how), per_kind)]


@st.composite
def corruption(draw: st.DrawFn, good: dict[str, Any], required: list[tuple[str, ...]], text_field: tuple[str, ...],
               date_field: tuple[str, ...], date_kind: str, limit: int,
               how: str) -> tuple[str, bytes, str, tuple[str, ...]]:
    """A bad variant of ``good``, corrupted ``how``: (label, body, error kind, what the reason names)."""
    dotted = ".".join
    if how == "not_json":
        return how, draw(not_json()), "invalid_message", ("消息格式无效", "JSON")
    if how == "not_object":
        value = draw(st.one_of(st.integers(), st.text(PRINTABLE, max_size=10), st.lists(st.integers(), max_size=3)))
        return how, json_body(value), "invalid_message", ("消息格式无效",)
    if how == "missing":
        path = draw(st.sampled_from(required))
        return how, json_body(drop_path(good, path)), "invalid_message", (dotted(path), "Field required")
    if how == "wrong_type":
        path = draw(st.sampled_from(required))
        value = draw(st.one_of(st.just([1, 2]), st.just({"x": 1}), st.just(None)))
        return how, json_body(set_path(good, path, value)), "invalid_message", ("消息格式无效", dotted(path))
    if how == "extra":
        name = "x_" + draw(st.text("abcdefghij", min_size=1, max_size=8))
        return how, json_body({**good, name: draw(WORDS)}), "invalid_message", (name, "Extra inputs are not permitted")
    if how == "date":
        day = date(draw(YEAR_OUTSIDE), draw(st.integers(1, 12)), draw(st.integers(1, 28)))
        value = day.isoformat() if date_kind == "date" else f"{day.isoformat()}T08:00:00+08:00"
        return how, json_body(set_path(good, date_field, value)), "invalid_message", (
            dotted(date_field), "日期须在 2000 至 2100 年之间")
    if how == "overlong":
        value = draw(st.text(PRINTABLE, min_size=201, max_size=260))
        return how, json_body(set_path(good, text_field, value)), "invalid_message", (
            dotted(text_field), "at most")
    if how == "control":
        word = draw(WORDS)
        value = word[:1] + draw(CONTROL) + word[1:]
        return how, json_body(set_path(good, text_field, value)), "invalid_message", (dotted(text_field), "控制字符")
    padding = "填" * ((limit // 3) + draw(st.integers(1, 2000)))  # oversize: 3 bytes each, just over the limit
    body = json_body(set_path(good, text_field, padding))
    return how, body, "too_large", (f"{len(body):,} 字节", f"{limit:,} 字节")


# -- the running system ------------------------------------------------------------------------


@dataclass
class System:
    router: Router
    notifier: Notifier
    evaluation: Evaluation
    store: Store
    connection: aio_pika.abc.AbstractRobustConnection
    channel: aio_pika.abc.AbstractChannel
    events: Tap
    dead: dict[str, Tap]

    @property
    def ledger(self) -> MongoLedgerRepository:
        return MongoLedgerRepository(self.store)

    @property
    def notifications(self) -> NotifierRepository:
        return NotifierRepository(self.store)

    async def publish(self, cases: list[Case]) -> None:
        for case in cases:
            if not case.exchange:  # published already, by another user
                continue
            exchange = await self.channel.get_exchange(case.exchange, ensure=False)
            await exchange.publish(aio_pika.Message(case.body, delivery_mode=2, message_id=case.message_id,
                                                    type=case.amqp_type, user_id=case.user_id),
                                   routing_key=case.routing_key)


@pytest.fixture
async def system(amqp_url: str, amqp: aio_pika.abc.AbstractRobustConnection, rules_copy: Path,  # noqa: F811
                 clean_queues: None, store: Store, tap: Any) -> AsyncIterator[System]:  # noqa: F811
    broker = BrokerSettings(amqp_url=amqp_url)
    router = create_router(RouterSettings(rules_dir=rules_copy, watch_rules=False), broker)
    notifier = create_notifier(NotifierSettings(rules_dir=rules_copy, poll_interval_s=0.2), broker, store=store)
    evaluation = create_evaluation(EvaluationSettings(rules_dir=rules_copy, sweep_interval_s=3600), broker, store=store)
    for service in (notifier, evaluation, router):
        await service.app.start()
    events = await tap("zeroerrand.events")
    dead = {queue.name: await tap("zeroerrand.dead", queue.name)
            for queue in (ROUTER_QUEUE, NOTIFIER_QUEUE, EVALUATION_QUEUE, LEDGER_REQUESTS_QUEUE)}
    channel = await amqp.channel(publisher_confirms=True)
    yield System(router, notifier, evaluation, store, amqp, channel, events, dead)
    await channel.close()
    for service in (router, evaluation, notifier):
        await service.app.stop()


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60,
                describe: Callable[[], Any] | None = None) -> Any:
    """Polls ``check`` until it returns something true; fails loudly, saying what was awaited (and
    ``describe()``: what is still missing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            pytest.fail(f"waited {timeout:g}s for: {what}" + (f"; still missing: {describe()}" if describe else ""))
        await asyncio.sleep(0.25)


async def parked_exactly(system: System, expected: dict[str, list[Case]]) -> dict[str, int]:
    """Waits until each dead-letter queue holds its bad cases, then checks it holds nothing else and
    that each was parked with its kind and a reason naming what was wrong."""
    for queue, cases in expected.items():
        ids = {c.message_id for c in cases}
        tapped = system.dead[queue]

        async def arrived(tapped: Tap = tapped, ids: set[str] = ids) -> bool:
            return ids <= {m.message_id for m in tapped.messages}

        def missing(tapped: Tap = tapped, cases: list[Case] = cases) -> list[str]:
            return [c.label for c in cases if c.message_id not in {m.message_id for m in tapped.messages}]
        await until(arrived, f"{len(ids)} bad messages parked on {queue}.dead", describe=missing)
    await settled(system)
    figures = {}
    for queue, cases in expected.items():
        by_id = {c.message_id: c for c in cases}
        parked = system.dead[queue].messages
        strays = [(m.message_id, m.headers.get("x-zeroerrand-error")) for m in parked if m.message_id not in by_id]
        assert strays == [], f"good messages parked on {queue}.dead: {strays}"
        for message in parked:
            case = by_id[message.message_id]
            headers = message.headers or {}
            reason = str(headers.get("x-zeroerrand-error"))
            assert headers.get("x-zeroerrand-error-kind") == case.parked_as, (case.label, reason)
            assert headers.get("x-zeroerrand-source-queue") == queue
            for needed in case.reason_has:
                assert needed in reason, f"{case.label}: {needed!r} not in the reason {reason[:600]!r}"
            assert message.body == case.body, f"{case.label}: the parked body is not the original"
        assert Counter(m.message_id for m in parked) == Counter(list(by_id)), f"{queue}: parked twice or not at all"
        figures[queue] = len(parked)
    return figures


async def settled(system: System) -> None:
    """Every consumer queue empty and nothing in flight."""
    async def empty() -> bool:
        depths = [await queue_depth(system.connection, q) for q in (
            ROUTER_QUEUE.name, NOTIFIER_QUEUE.name, EVALUATION_QUEUE.name, LEDGER_REQUESTS_QUEUE.name)]
        busy = [s.inflight._tasks for s in (system.router, system.notifier, system.evaluation)]
        return not any(depths) and not any(busy)
    await until(empty, "every consumer queue drained")
    await asyncio.sleep(0.5)  # one more round of events the last messages caused
    await until(empty, "every consumer queue drained")


# -- agreements ---------------------------------------------------------------------------------


BASE_AGREEMENT: dict[str, Any] = json.loads(example(ALUMINIUM).model_dump_json())
AGREEMENT_REQUIRED = [("agreement_id",), ("signed_on",), ("project",), ("eligibility",), ("plan",), ("event_id",),
                      ("project", "code"), ("project", "enterprise"), ("eligibility", "enterprise_consent")]


# a fact's value: any the model allows, right type or not (a wrong type makes the items that test it unroutable)
EDGE_FACTS = (1e-07, -3.5e-05, 5e-324, -0.0, 10**15, -1e15, 999.99999, "3200", "abc", True, False)
FACT_VALUE = st.one_of(st.sampled_from(EDGE_FACTS), st.integers(-10**15, 10**15), st.floats(-1e15, 1e15, allow_nan=False),
                       st.floats(-1e-3, 1e-3, allow_nan=False), st.booleans(), WORDS)
ITEM_CODE = st.one_of(st.sampled_from(CATALOG), st.sampled_from(CATALOG), st.sampled_from(["EP-04", "PL-99"]),
                      st.text(PRINTABLE, min_size=1, max_size=64).filter(lambda s: s.strip() != ""))


@st.composite
def good_agreement_shape(draw: st.DrawFn) -> dict[str, Any]:
    plan = draw(st.lists(st.tuples(ITEM_CODE, st.sampled_from(["handle", "handle", "consult"])),
                         min_size=1, max_size=8))
    if draw(st.booleans()):  # the energy review tests the facts
        plan.append(("PL-03", draw(st.sampled_from(["handle", "consult"]))))
    return {
        "name": draw(WORDS), "enterprise": draw(WORDS), "contact": draw(WORDS), "signed_on": draw(DAY_IN_WINDOW),
        "recruiting_unit": draw(st.sampled_from([*UNITS, "no_such_unit"])),
        "clause": draw(st.sampled_from([True, True, True, False])),
        "consent": draw(st.sampled_from([True, True, True, False])),
        "facts": {"annual_energy_tce": draw(st.one_of(st.integers(0, 200_000), FACT_VALUE, FACT_VALUE)),
                  "annual_electricity_10k_kwh": draw(st.one_of(st.floats(0, 100_000, allow_nan=False), FACT_VALUE)),
                  **draw(st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20), FACT_VALUE,
                                         max_size=5))},
        "plan": [{"item": code, "request": request, **({"note": draw(WORDS)} if draw(st.booleans()) else {})}
                 for code, request in plan],
    }


def agreement_from(shape: dict[str, Any], tag: str) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE_AGREEMENT))
    data["agreement_id"] = f"FUZZ-XY-{tag}"
    data["event_id"] = stable_id(data["agreement_id"], "agreement.signed")
    data["signed_on"] = shape["signed_on"].isoformat()
    project = data["project"]
    project.update(code=f"FUZZ-{tag}", name=shape["name"], recruiting_unit=shape["recruiting_unit"], facts=shape["facts"])
    project["enterprise"]["name"] = shape["enterprise"]
    project["enterprise"]["contact"] = {"name": shape["contact"]}
    data["eligibility"] = {"zero_errand_clause": shape["clause"], "committee_decision": None,
                           "enterprise_consent": shape["consent"]}
    data["plan"] = shape["plan"]
    return data


def agreement_cases(count_good: int, per_kind: int) -> list[Case]:
    cases = []
    for n, shape in enumerate(drawn(good_agreement_shape(), count_good)):
        data = agreement_from(shape, f"G{n:03d}")
        cases.append(Case(f"agreement good {n}", json_body(data), "agreement.signed", "zeroerrand.agreements",
                          message_id=data["event_id"]))
    bad = corrupted(BASE_AGREEMENT, AGREEMENT_REQUIRED, ("project", "name"), ("signed_on",), "date",
                    MAX_AGREEMENT_BYTES, per_kind)
    for n, (how, body, kind, needs) in enumerate(bad):
        cases.append(Case(f"agreement bad {n} ({how})", body, "agreement.signed", "zeroerrand.agreements",
                          parked_as=kind, reason_has=needs))
    raw = json_body(BASE_AGREEMENT).decode()
    for label, text, needs in (
            ("NaN fact", raw.replace('"annual_energy_tce": 3200', '"annual_energy_tce": NaN'), "有限数"),
            ("fact over 1e15", raw.replace('"annual_energy_tce": 3200', '"annual_energy_tce": 1e16'), "数值型事实超出"),
            ("webhook not http", raw.replace('"webhook": null', '"webhook": "file:///etc/passwd"'), "webhook")):
        assert text != raw, label
        cases.append(Case(f"agreement bad ({label})", text.encode(), "agreement.signed", "zeroerrand.agreements",
                          parked_as="invalid_message", reason_has=(needs,)))
    five_mb = json_body(set_path(BASE_AGREEMENT, ("project", "name"), "x" * 5_000_000))  # the issue's own example
    cases.append(Case("agreement bad (5 MB)", five_mb, "agreement.signed", "zeroerrand.agreements", parked_as="too_large",
                      reason_has=(f"{len(five_mb):,} 字节", f"{MAX_AGREEMENT_BYTES:,} 字节")))
    return cases


# -- events ---------------------------------------------------------------------------------------


@dataclass
class Known:
    """What the first phase left: projects started, with their routed items."""

    items: dict[str, list[RoutedItem]]  # project code -> its routed items
    started: dict[str, ServiceStarted]


def event_of_type(kind: str, known: Known, draw: st.DrawFn, n: int) -> tuple[dict[str, Any], str | None]:
    """A good event of type ``kind`` about a known project (and item): its JSON and AMQP type."""
    now = datetime.now(UTC)
    code = draw(st.sampled_from(sorted(known.items)))
    item = draw(st.sampled_from(known.items[code]))
    started = known.started[code]
    base = {"type": kind, "event_id": f"fuzz-event-{n}-{kind}", "occurred_at": now.isoformat(),
            "recorded_at": now.isoformat()}
    on_item = {"project_code": code, "item_code": item.item_code, "reported_by": item.responsible_unit}
    text = draw(WORDS)
    fresh = f"FUZZ-EV-{n:03d}"
    if kind == "item.routed":  # a routed item, as the router publishes it (AMQP type approval.item)
        routed = item.model_copy(update={"item_id": f"fuzz-item-{n}", "project_code": fresh})
        return json.loads(routed.model_dump_json()), "approval.item"
    bodies: dict[str, dict[str, Any]] = {
        "agreement.signed": {k: v for k, v in agreement_from(draw(good_agreement_shape()), f"EV{n:03d}").items()
                             if k not in ("type", "event_id", "occurred_at", "recorded_at")},
        "agreement.rejected": {"agreement_id": f"FUZZ-XY-EV{n}", "project": {**json.loads(
            started.project.model_dump_json()), "code": fresh}, "reasons": [text]},
        "service.started": {**json.loads(started.model_dump_json(exclude={"type", "event_id", "occurred_at",
                                                                             "recorded_at"})),
                            "agreement_id": f"FUZZ-XY-EV{n}",
                            "project": {**json.loads(started.project.model_dump_json()), "code": fresh}},
        "item.unroutable": {"item_id": f"fuzz-unroutable-{n}", "agreement_id": started.agreement_id,
                            "project_code": code, "project_name": started.project.name,
                            "recruiting_unit": started.project.recruiting_unit, "item_code": "PL-99", "item_name": None,
                            "request": "handle", "unroutable": {"reason_code": "unknown_item", "reason": text,
                                                                "rules_version": "v", "facts": {},
                                                                "decided_at": now.isoformat()}},
        "rules.activated": {"version": "v-fuzz", "previous_version": None, "directory": "/rules", "rules": 3,
                            "items": 25},
        "rules.rejected": {"attempted_version": None, "active_version": "v", "directory": "/rules", "problems": [text]},
        "item.ready": {**on_item, "waited_for": [], "task_order_required": item.task_order_required},
        "item.contacted": {**on_item, "note": text},
        "item.accepted": {**on_item},
        "item.progress": {**on_item, "note": text},
        "item.blocked": {**on_item, "reason": text, "resolver": draw(st.sampled_from(UNITS))},
        "item.unblocked": {**on_item},
        "item.suspended": {**on_item, "reason": text},
        "item.resumed": {**on_item, "note": text},
        "item.completed": {**on_item},
        "item.overdue": {**on_item, "clock": draw(st.sampled_from(["service", "statutory"])),
                         "level": draw(st.sampled_from(["warning", "yellow", "red"])),
                         "due_on": draw(DAY_IN_WINDOW).isoformat(), "working_days_used": 3, "time_limit_days": 2},
        "item.delivered": {**on_item, "results": draw(st.lists(WORDS, min_size=1, max_size=3))},
        # moved to the unit it already has: a rerouted item changes whom later events of it reach
        "item.rerouted": {**on_item, "item_name": item.item_name, "state": "ready", "from_mode": item.mode.value,
                          "to_mode": item.mode.value, "from_unit": item.responsible_unit,
                          "to_unit": item.responsible_unit, "from_authority": item.approving_authority,
                          "to_authority": item.approving_authority, "task_order_required": item.task_order_required,
                          "time_limit_days": item.time_limit_days, "materials": list(item.materials),
                          "rule_id": "fuzz-rule", "rules_version": "v-fuzz", "reason": text},
        "task_order.issued": {**on_item, "number": f"RWD-{n}", "issued_by": "econ_dev_bureau",
                              "assigned_to": "zhenglian_company", "automatic": draw(st.booleans())},
        "task_order.accepted": {**on_item, "number": f"RWD-{n}", "specialist_name": text,
                                "specialist_phone": "13800001111"},
        "task_order.closed": {**on_item, "number": f"RWD-{n}"},
        "project.delivered": {"project_code": code, "items_delivered": 3},
        "assessment.submitted": {"assessment_id": f"fuzz-as-{n}", "project_code": code,
                                 "provider": item.responsible_unit, "rater": "recruiting_unit",
                                 "requested_by": started.project.recruiting_unit, "year": 2026,
                                 "scores": FULL_SCORES, "total": 100.0, "bad": False, "comment": text},
        "assessment.rectified": {"assessment_id": f"fuzz-as-{n}", "project_code": code,
                                 "provider": item.responsible_unit, "note": text, "late": draw(st.booleans())},
        "assessment.rectification_overdue": {"assessment_id": f"fuzz-as-{n}", "project_code": code,
                                             "provider": item.responsible_unit, "total": 40.0,
                                             "rectify_by": "2026-12-15", "evaluators": ["gov_service_bureau"]},
        # amendments (补充协议): one that changes nothing of a known project, under a revision of its own
        "agreement.amended": {k: v for k, v in agreement_from(draw(good_agreement_shape()), f"EVA{n:03d}").items()
                              if k in AgreementAmended.model_fields and k not in ("type", "event_id", "occurred_at",
                                                                                  "recorded_at")},
        "plan.amended": {"agreement_id": f"FUZZ-XY-EVA{n}", "signed_on": started.signed_on.isoformat(),
                         "project": json.loads(started.project.model_dump_json()),
                         "previous_recruiting_unit": started.project.recruiting_unit, "revision": 100 + n,
                         "added": [], "removed": [], "items_planned": started.items_planned,
                         "rules_version": started.rules_version},
        "project.amended": {"project_code": code, "agreement_id": f"FUZZ-XY-EVA{n}", "revision": 100 + n,
                            "signed_on": started.signed_on.isoformat(), "recruiting_unit": started.project.recruiting_unit,
                            "previous_recruiting_unit": started.project.recruiting_unit, "added": [], "withdrawn": [],
                            "kept": [], "items_planned": started.items_planned},
        "item.withdrawn": {**on_item, "item_name": item.item_name, "responsible_unit": item.responsible_unit,
                           "agreement_id": f"FUZZ-XY-EVA{n}", "revision": 100 + n, "from_state": "ready"},
        "request.refused": {"request_id": f"fuzz-r-{n}", "request_type": "item.accept",
                            "requested_by": draw(st.sampled_from([*UNITS, "some_system"])), "project_code": code,
                            "item_code": item.item_code, "reason": text},
    }
    return {**base, **bodies[kind]}, None


def event_cases(known: Known, per_kind: int) -> list[Case]:
    numbers = itertools.count()

    @st.composite
    def every_type(draw: st.DrawFn) -> list[tuple[dict[str, Any], str | None]]:
        return [event_of_type(kind, known, draw, next(numbers)) for kind in EVENT_TYPES]

    good = [event for draw in drawn(every_type(), 2) for event in draw]
    routed_event = next(data for data, amqp_type in good if amqp_type == "approval.item")
    now = datetime.now(UTC).isoformat()
    good.append(({"type": "item.routed", "event_id": "fuzz-event-item.routed", "occurred_at": now,
                  "recorded_at": now, "item": {**routed_event, "item_id": "fuzz-item-as-event",
                                               "project_code": "FUZZ-EV-ROUTED"}}, None))
    cases = [Case(f"event good {data.get('type', 'approval.item')}", json_body(data),
                  data.get("type") or "joint.planning_construction_bureau", "zeroerrand.events",
                  message_id=data.get("event_id") or data["item_id"], amqp_type=amqp_type or data.get("type"))
             for data, amqp_type in good]
    template = next(json.loads(c.body) for c in cases if c.amqp_type == "item.delivered")
    required = [("event_id",), ("occurred_at",), ("project_code",), ("item_code",), ("results",), ("reported_by",)]
    bad = corrupted(template, required, ("item_code",), ("occurred_at",), "datetime", MAX_EVENT_BYTES, per_kind)
    for n, (how, body, kind, needs) in enumerate(bad):
        cases.append(Case(f"event bad {n} ({how})", body, "item.delivered", "zeroerrand.events", amqp_type="item.delivered",
                          parked_as=kind, reason_has=needs))
    unknown = {**template, "type": "item.teleported"}
    cases.append(Case("event bad (unknown type)", json_body(unknown), "item.teleported", "zeroerrand.events",
                      parked_as="invalid_message", reason_has=("item.teleported",)))
    cases.append(Case("event bad (wrong AMQP type: an event labelled approval.item)", json_body(template),
                      "item.delivered", "zeroerrand.events", amqp_type="approval.item",
                      parked_as="invalid_message", reason_has=("item_id", "Field required")))
    routed = next(c for c in cases if c.amqp_type == "approval.item")
    cases.append(Case("event bad (wrong AMQP type: a routed item labelled as an event)", routed.body,
                      "joint.planning_construction_bureau", "zeroerrand.events", amqp_type="item.routed",
                      parked_as="invalid_message", reason_has=("消息格式无效",)))
    cases.append(Case("event bad (no user id)", json_body(template), "item.delivered", "zeroerrand.events",
                      amqp_type="item.delivered", user_id=None, parked_as="untrusted_publisher",
                      reason_has=("不是可信的服务", "None")))
    return cases


# -- requests -------------------------------------------------------------------------------------


def request_json(kind: str, n: int, requested_by: str, project_code: str, item_code: str, draw: st.DrawFn,
                 **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    happened = now - timedelta(minutes=draw(st.integers(0, 30)))
    base = {"type": kind, "request_id": f"fuzz-req-{n}-{kind}", "requested_at": now.isoformat(),
            "occurred_at": happened.isoformat(), "requested_by": requested_by}
    if draw(st.booleans()):
        base["operator"] = draw(WORDS)
    text = draw(WORDS)
    if kind == "assessment.submit":
        return {**base, "project_code": project_code, "provider": extra.get("provider", draw(st.sampled_from(UNITS))),
                "rater": extra.get("rater", "recruiting_unit"), "year": now.year,
                "scores": extra.get("scores", FULL_SCORES), **({"comment": text} if draw(st.booleans()) else {})}
    if kind == "assessment.rectify":
        return {**base, "assessment_id": draw(st.sampled_from(["fuzz-as-1", "nothing-here"])), "note": text}
    fields: dict[str, Any] = {
        "item.report_progress": {"note": text}, "item.suspend": {"reason": text}, "item.enterprise_issue": {"reason": text},
        "item.report_blocker": {"reason": text, "resolver": extra.get("resolver", draw(st.sampled_from(UNITS)))},
        "item.deliver": {"results": draw(st.lists(WORDS, min_size=1, max_size=3))},
        "task_order.accept": {"specialist_name": text, "specialist_phone": "13800001111"},
        "item.reroute": {"reason": text},  # the decision: see request_cases
    }
    note = {"note": text} if kind not in fields and draw(st.booleans()) else {}
    return {**base, "project_code": project_code, "item_code": item_code, **fields.get(kind, {}), **note, **{
        k: v for k, v in extra.items() if k == "request"}}


def request_cases(known: Known, per_type: int, per_kind: int) -> list[Case]:
    @st.composite
    def a_request(draw: st.DrawFn, kind: str) -> dict[str, Any]:
        code = draw(st.sampled_from(sorted(known.items)))
        item = draw(st.sampled_from(known.items[code]))
        sender = draw(st.sampled_from([item.responsible_unit, item.responsible_unit, "econ_dev_bureau",
                                       draw(st.sampled_from(UNITS))]))
        data = request_json(kind, 0, sender, code, item.item_code, draw, request=item.request.value)
        if kind == "item.reroute":  # to the decision it already has: a moved item changes what later requests may do
            decision = item.decision
            data |= {"mode": item.mode.value, "responsible_unit": item.responsible_unit,
                     "approving_authority": item.approving_authority, "evaluated_as": decision.evaluated_as.value,
                     "evaluator": decision.evaluator, "task_order_required": item.task_order_required,
                     "rule_id": decision.rule_id, "rules_version": decision.rules_version}
        return data

    cases = []
    for n, data in enumerate(data for kind in COMMAND_TYPES for data in drawn(a_request(kind), per_type)):
        data["request_id"] = f"fuzz-req-{n}-{data['type']}"
        cases.append(Case(f"request good {n} {data['type']}", json_body(data), data["type"], "zeroerrand.requests",
                          message_id=data["request_id"], amqp_type=data["type"]))
    code = sorted(known.items)[0]
    now = datetime.now(UTC).isoformat()
    template = {"type": "item.deliver", "request_id": "fuzz-req-template", "requested_at": now, "occurred_at": now,
                "requested_by": known.items[code][0].responsible_unit, "project_code": code,
                "item_code": known.items[code][0].item_code, "results": ["营业执照"]}
    required = [("request_id",), ("requested_at",), ("occurred_at",), ("requested_by",), ("project_code",),
                ("item_code",), ("results",)]
    bad = corrupted(template, required, ("requested_by",), ("occurred_at",), "datetime", MAX_REQUEST_BYTES, per_kind)
    for n, (how, body, kind, needs) in enumerate(bad):
        cases.append(Case(f"request bad {n} ({how})", body, "item.deliver", "zeroerrand.requests",
                          amqp_type="item.deliver", parked_as=kind, reason_has=needs))
    cases.append(Case("request bad (unknown type)", json_body({**template, "type": "item.teleport"}), "item.teleport",
                      "zeroerrand.requests", parked_as="invalid_message", reason_has=("item.teleport",)))
    return cases


@dataclass
class Impossible:
    case: Case
    refused_for: str  # what the ledger's reason must say


def impossible_cases(project: str, started: ServiceStarted) -> list[Impossible]:
    """Issue 9's impossible requests, all about one project no other request touches."""
    @st.composite
    def four(draw: st.DrawFn) -> list[dict[str, Any]]:
        return [
            request_json("item.deliver", 1, "gov_service_bureau", project, "MA-01", draw),
            request_json("assessment.submit", 2, started.project.recruiting_unit, project, "", draw,
                         provider="no_such_unit"),
            request_json("assessment.submit", 3, "econ_dev_bureau", f"HLXQ-NOWHERE-{uuid.uuid4().hex[:6]}", "", draw,
                         provider="gov_service_bureau"),
            request_json("item.report_blocker", 4, "gov_service_bureau", project, "MA-01", draw,
                         resolver="no_such_unit"),
        ]

    [drawn_four] = drawn(four(), 1)
    reasons = ["不能移交结果", "no_such_unit未承办项目", "台账中没有项目 HLXQ-NOWHERE-", "'no_such_unit' 不在单位名录"]
    return [Impossible(Case(f"impossible {data['type']} ({reason})", json_body(data), data["type"],
                            "zeroerrand.requests", message_id=data["request_id"], amqp_type=data["type"]), reason)
            for data, reason in zip(drawn_four, reasons, strict=True)]


# -- the test -----------------------------------------------------------------------------------


_COMPOSERS: dict[Any, Any] = {}


async def expected_notifications(system: System, event: Any) -> set[str]:
    """The notification ids the plan asks for ``event``, composed as the notifier does (nothing when
    the notifier cannot know the event's project or item, which it then parks)."""
    rules_dir = system.notifier.settings.rules_dir
    if rules_dir not in _COMPOSERS:  # parsing the rule files for every event was most of the test's time
        _COMPOSERS[rules_dir] = load_composer(system.notifier.settings)
    composer = _COMPOSERS[rules_dir]
    try:
        project, item = await views_of(event, system.notifications)
    except MissingContext:
        return set()
    return {d["_id"] for d in composer.compose(event, project, item, datetime.now(UTC))}


async def test_fuzzed_messages_are_parked_refused_or_processed_and_nothing_false_is_recorded(
        system: System, amqp_url: str) -> None:  # noqa: F811
    figures: dict[str, Any] = {}

    # 1. agreements to the router, good and bad; the impossible requests' project among the good
    agreements = agreement_cases(count_good=24, per_kind=3)
    target = json.loads(json.dumps(BASE_AGREEMENT))
    target.update(agreement_id="FUZZ-XY-IMPOSSIBLE", event_id=stable_id("FUZZ-XY-IMPOSSIBLE", "agreement.signed"))
    target["project"]["code"] = "FUZZ-IMPOSSIBLE"
    agreements.append(Case("agreement good (impossible requests' project)", json_body(target), "agreement.signed",
                           "zeroerrand.agreements", message_id=target["event_id"]))
    await system.publish(agreements)
    good = [c for c in agreements if not c.bad]

    def outcome_event(case: Case) -> list[Any]:
        agreement_id = json.loads(case.body)["agreement_id"]
        ids = {stable_id(agreement_id, "service.started"), stable_id(agreement_id, "agreement.rejected")}
        return [m for m in system.events.messages if m.message_id in ids]

    async def all_routed() -> bool:
        return all(outcome_event(c) for c in good)
    await until(all_routed, "a service.started or agreement.rejected for every good agreement")
    figures["router parked"] = await parked_exactly(system, {ROUTER_QUEUE.name: [c for c in agreements if c.bad]})

    started: dict[str, ServiceStarted] = {}
    for case in good:
        [message] = outcome_event(case)
        if message.type == "service.started":
            event = ServiceStarted.model_validate_json(message.body)
            started[event.project.code] = event
    items: dict[str, list[RoutedItem]] = {code: [] for code in started}
    for message in system.events.messages:
        if message.type == "approval.item":
            routed = RoutedItem.model_validate_json(message.body)
            items.setdefault(routed.project_code, []).append(routed)
    for routed_items in items.values():  # no decision rests on a fact of another type than routing.yaml declares
        for routed in routed_items:
            for name, value in routed.decision.facts.items():
                spec = BOOK.project_facts.get(name.removeprefix("project."))
                if spec is not None and spec.type == "number":
                    assert isinstance(value, (int, float)) and not isinstance(value, bool), (routed.item_id, name, value)
    for code, event in started.items():  # every good agreement is in the ledger and was notified
        assert len(items[code]) == event.items_routed

        async def in_ledger(code: str = code, event: ServiceStarted = event) -> bool:
            return len(await system.ledger.project_items(code)) == event.items_routed
        await until(in_ledger, f"the {event.items_routed} items of {code} in the ledger")
        assert await system.ledger.project(code) is not None
        assert {d["_id"] for d in await system.notifications.find(event_id=event.event_id, limit=1000)} == \
            await expected_notifications(system, event)
    figures["agreements"] = {"good": len(good), "bad": len(agreements) - len(good), "started": len(started),
                             "rejected": len(good) - len(started)}
    assert started and len(started) < len(good), "the draw should give started and rejected agreements"

    # 2. events of every type on zeroerrand.events (the notifier's and the ledger's queues)
    known = Known({c: i for c, i in items.items() if i and c != "FUZZ-IMPOSSIBLE"},
                  {c: s for c, s in started.items() if c != "FUZZ-IMPOSSIBLE"})
    events = event_cases(known, per_kind=3)
    events.extend(await untrusted_cases(amqp_url, events))
    system.events.messages.clear()
    await system.publish(events)
    bad_events = [c for c in events if c.bad]
    figures["notifier parked"] = (await parked_exactly(system, {NOTIFIER_DEAD: bad_events}))[NOTIFIER_DEAD]
    figures["ledger parked (events)"] = (await parked_exactly(system, {LEDGER_DEAD: bad_events}))[LEDGER_DEAD]
    for case in (c for c in events if not c.bad):
        event = decode_event(case.amqp_type, case.body)
        expected = await expected_notifications(system, event)
        stored = {d["_id"] for d in await system.notifications.find(event_id=event.event_id, limit=1000)}
        assert stored == expected, f"{case.label}: stored {len(stored)} notifications, the plan says {len(expected)}"
    fresh_items = [json.loads(c.body) for c in events if c.amqp_type == "approval.item" and not c.bad]
    for data in fresh_items:  # the ledger took the routed item
        key = item_key(data["project_code"], data["item_code"], Request(data["request"]))
        assert await system.ledger.item(key) is not None, key
    figures["events"] = {"good": len(events) - len(bad_events), "bad": len(bad_events),
                         "types": len({json.loads(c.body).get("type", "approval.item") for c in events if not c.bad})}
    assert {json.loads(c.body).get("type", "approval.item") for c in events if not c.bad} == {*EVENT_TYPES, "approval.item"}

    # 3. requests to the ledger: drawn ones (applied or refused), bad ones, and the impossible ones
    target_project = started["FUZZ-IMPOSSIBLE"]
    before = await system.notifications.find(project="FUZZ-IMPOSSIBLE", limit=10_000)
    ledger_before = await system.ledger.project_items("FUZZ-IMPOSSIBLE")
    requests = request_cases(known, per_type=6, per_kind=3)
    impossible = impossible_cases("FUZZ-IMPOSSIBLE", target_project)
    await system.publish([*requests, *(i.case for i in impossible)])
    bad_requests = [c for c in requests if c.bad]
    figures["ledger parked (requests)"] = (await parked_exactly(
        system, {LEDGER_REQUESTS_QUEUE.name: bad_requests}))[LEDGER_REQUESTS_QUEUE.name]

    async def decided(request_id: str) -> Any:
        outcome = await system.ledger.outcome(request_id)
        return outcome if outcome is not None and outcome.status != "pending" else None
    statuses: Counter[str] = Counter()
    for case in (c for c in requests if not c.bad):
        outcome = await until(lambda case=case: decided(case.message_id), f"the ledger's decision on {case.label}")
        statuses[outcome.status] += 1
        if outcome.status == "refused":
            assert outcome.reason, f"{case.label}: refused without a reason"
    for entry in impossible:
        outcome = await until(lambda entry=entry: decided(entry.case.message_id), f"the decision on {entry.case.label}")
        assert outcome.status == "refused" and entry.refused_for in (outcome.reason or ""), (entry.case.label, outcome)
    await settled(system)

    # nothing recorded for the impossible requests, and no one told but their senders
    assert await system.ledger.project_items("FUZZ-IMPOSSIBLE") == ledger_before
    for provider in ("no_such_unit", "gov_service_bureau"):
        for rater in ("enterprise", "recruiting_unit"):
            assert await system.ledger.find_assessment("FUZZ-IMPOSSIBLE", provider, rater, datetime.now(UTC).year) is None
    after = await system.notifications.find(project="FUZZ-IMPOSSIBLE", limit=10_000)
    new = [d for d in after if d["_id"] not in {b["_id"] for b in before}]
    senders = {json.loads(i.case.body)["requested_by"] for i in impossible if "NOWHERE" not in i.case.body.decode()}
    assert {(d["event_type"], d["role"]) for d in new} <= {("request.refused", "sender")}, new
    assert {d["recipient"].removeprefix("unit:") for d in new} == senders
    refused_ids = {stable_id(i.case.message_id, "request.refused") for i in impossible}
    assert {d["event_id"] for d in new} <= refused_ids
    nowhere = await system.notifications.find(event_id=stable_id(impossible[2].case.message_id, "request.refused"))
    assert [(d["event_type"], d["recipient"]) for d in nowhere] == [("request.refused", "unit:econ_dev_bureau")]
    assert {json.loads(c.body)["type"] for c in requests if not c.bad} == set(COMMAND_TYPES)
    figures["requests"] = {"good": len(requests) - len(bad_requests), "bad": len(bad_requests),
                           "impossible (refused)": len(impossible), **dict(statuses)}
    assert statuses["applied"] and statuses["refused"], "the draw should give applied and refused requests"

    # nothing more parked anywhere since, and 4. no service died: each still takes a good message of its own
    await parked_exactly(system, {ROUTER_QUEUE.name: [c for c in agreements if c.bad], NOTIFIER_DEAD: bad_events,
                                  LEDGER_DEAD: bad_events, LEDGER_REQUESTS_QUEUE.name: bad_requests})
    await alive(system)
    every_bad = [c for c in (*agreements, *events, *requests) if c.bad]
    figures["bad, by what is wrong"] = dict(Counter(c.label.split("(", 1)[-1].rstrip(")").split(",")[0]
                                                    for c in every_bad))
    print("\nfuzz figures:", json.dumps(figures, ensure_ascii=False, indent=1))


async def untrusted_cases(url_of_vhost: str, events: list[Case]) -> list[Case]:
    """Events a unit's own RabbitMQ user published (its user id validated): parked unread."""
    from urllib.parse import unquote, urlsplit, urlunsplit
    template = next(c for c in events if c.amqp_type == "item.delivered" and not c.bad)
    user, password = f"fuzz-unit-{uuid.uuid4().hex[:6]}", "unit-secret"
    vhost = unquote(urlsplit(url_of_vhost).path.lstrip("/"))
    _rabbitmqctl("add_user", user, password)
    cases = [Case(f"event bad (published by {user}, {n})", template.body.replace(b"fuzz-event", f"forged-{n}".encode()),
                  "item.delivered", "zeroerrand.events", amqp_type="item.delivered", user_id=user,
                  parked_as="untrusted_publisher", reason_has=(user, "不是可信的服务")) for n in range(2)]
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, user, "", "zeroerrand\\..*", "")
        parts = urlsplit(url_of_vhost)
        url = urlunsplit((parts.scheme, f"{user}:{password}@{parts.hostname}:{parts.port or 5672}", parts.path, "", ""))
        async with await aio_pika.connect_robust(url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("zeroerrand.events", ensure=False)
            for case in cases:
                await exchange.publish(aio_pika.Message(case.body, delivery_mode=2, message_id=case.message_id,
                                                        type=case.amqp_type, user_id=user), routing_key=case.routing_key)
    finally:
        _rabbitmqctl("delete_user", user)
    return [replace_published(c) for c in cases]


def replace_published(case: Case) -> Case:
    """Already published by the unit's user: the system's publish skips it (an empty exchange name)."""
    case.exchange = ""
    return case


async def alive(system: System) -> None:
    agreement = agreement_from(drawn(good_agreement_shape(), 1)[0], "ALIVE")
    agreement["project"]["recruiting_unit"] = "econ_dev_bureau"
    agreement["eligibility"] = {"zero_errand_clause": True, "committee_decision": None, "enterprise_consent": True}
    await system.publish([Case("alive", json_body(agreement), "agreement.signed", "zeroerrand.agreements",
                               message_id=agreement["event_id"])])
    started_id = stable_id(agreement["agreement_id"], "service.started")

    async def recorded() -> bool:
        return (await system.ledger.project("FUZZ-ALIVE") is not None
                and bool(await system.notifications.find(event_id=started_id)))
    await until(recorded, "the router, the ledger and the notifier handling one more agreement")
