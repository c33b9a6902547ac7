"""Two evaluation services and two notifiers on one store and one vhost, as a New Area scales out.

The services run as ``zeroerrand`` processes (a router, two ``evaluation``, two ``notifier``) on a
private vhost and one embedded store. Projects are signed whose enterprise asks for webhook, e-mail
and SMS notices, served by local receivers. Then requests arrive together, as busy units send
them: several 首问对接 for each line at once, then several 受理, then progress reports. Each line
must take one contact and one acceptance (the others refused with the reason), keep every report
answered ``applied``, announce each change once, and every notice must reach its receiver once,
with nothing parked. On the code before the ledger's journal the same kind of run lost 183
applied requests, told 19 enterprises of one 受理 twice and sent 381 of 480 webhooks twice.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from services.common.bus import BrokerPublisher, make_broker, request_out
from services.common.messages import AcceptItem, AgreementSigned, ContactEnterprise, ReportProgress
from services.common.settings import StoreSettings
from services.common.storage import store_session
from services.common.topology import CONSUMER_QUEUES, EVENTS, dead_letter_queue
from services.evaluation.audit import verify
from services.evaluation.ledger import ItemState
from services.evaluation.repository import COLLECTIONS as LEDGER
from services.evaluation.repository import MongoLedgerRepository
from services.notifier.repository import COLLECTIONS as NOTIFIER
from services.notifier.repository import NotifierRepository
from tests.conftest import ALUMINIUM, example
from tests.faults.harness import ServiceProcess, service_env, sign_all, wait_drained
from tests.integration.conftest import store_directory
from tests.integration.test_notification_channels import Mailbox, smtp_server
from tests.integration.test_notifier import Receiver, serving

pytestmark = [pytest.mark.timeout(900), pytest.mark.integration]

PROJECTS = 6
SAME_TIME = 4  # copies of each contact and each acceptance sent at once
REPORTS = 3  # progress reports per line, all at once
DATABASE = "zeroerrand_replicas"


def agreements(webhook: str) -> list[AgreementSigned]:
    signed = []
    for n in range(PROJECTS):
        agreement = example(ALUMINIUM, suffix=f"R{n:02d}")
        contact = agreement.project.enterprise.contact.model_copy(update={"webhook": webhook})
        enterprise = agreement.project.enterprise.model_copy(update={"contact": contact})
        signed.append(agreement.model_copy(update={"project": agreement.project.model_copy(
            update={"enterprise": enterprise})}))
    return signed


def now_request(model: Any, by: str, **fields: Any) -> Any:
    """A request as a unit's system sends it now (the ledger refuses what happens in the future)."""
    moment = datetime.now(UTC)
    return model(request_id=str(uuid.uuid4()), requested_at=moment, occurred_at=moment, requested_by=by, **fields)


async def tap_events(url: str) -> tuple[aio_pika.abc.AbstractRobustConnection, list[aio_pika.abc.AbstractIncomingMessage]]:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(EVENTS.name, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("zeroerrand.test.replicas-tap", durable=True, arguments={"x-queue-type": "quorum"})
    await queue.bind(exchange, "#")
    seen: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        seen.append(message)
        await message.ack()

    await queue.consume(keep)
    return connection, seen


async def wait_for(what: str, check, timeout_s: float = 180) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f} s")
        await asyncio.sleep(0.5)


async def test_two_ledgers_and_two_notifiers_apply_each_request_once_and_send_each_notice_once(
        amqp_url: str, clean_queues: None, tmp_path: Path) -> None:
    # the vhost is the session's: what earlier tests left on its queues would be consumed here
    data = store_directory("zeroerrand-replicas-")
    hooks, gateway, mailbox = Receiver(), Receiver(), Mailbox()
    async with serving(hooks, "/hook"), serving(gateway, "/sms/send"):
        with smtp_server(mailbox) as smtp_port:
            env = {**service_env(amqp_url, data, DATABASE),
                   "ZEROERRAND_NOTIFIER_SMTP_HOST": "127.0.0.1", "ZEROERRAND_NOTIFIER_SMTP_PORT": str(smtp_port),
                   "ZEROERRAND_NOTIFIER_SMTP_SECURITY": "none", "ZEROERRAND_NOTIFIER_SMS_GATEWAY_URL": gateway.url,
                   "ZEROERRAND_NOTIFIER_SMS_GATEWAY_TOKEN": "t", "ZEROERRAND_NOTIFIER_POLL_INTERVAL_S": "0.2"}
            processes = [ServiceProcess(command, env, tmp_path / f"{command}-{n}.log", amqp_url)
                         for command, n in (("evaluation", 1), ("router", 1), ("evaluation", 2), ("notifier", 1),
                                            ("notifier", 2))]
            connection, events = await tap_events(amqp_url)
            try:
                for process in processes:
                    await process.start()
                signed = agreements(hooks.url)
                await sign_all(amqp_url, signed)
                async with store_session(StoreSettings(data_dir=data, database=DATABASE),
                                         collections=(*LEDGER, *NOTIFIER)) as store:
                    repo = MongoLedgerRepository(store)
                    codes = [a.project.code for a in signed]

                    async def lines_ready() -> bool:
                        items = [i for code in codes for i in await repo.project_items(code)]
                        return len(items) == PROJECTS * 23

                    await wait_for("every line in the ledger", lines_ready)
                    ready = [i for code in codes for i in await repo.project_items(code) if i.state is ItemState.READY
                             and not i.task_order_required]
                    assert len(ready) == PROJECTS * 2  # MA-01 and LT-01: the others wait for them

                    broker = make_broker(amqp_url)
                    await broker.connect()
                    publisher = BrokerPublisher(broker)
                    sent: dict[str, list] = {}  # type: ignore[type-arg]
                    for kind, model, copies in (("contact", ContactEnterprise, SAME_TIME), ("accept", AcceptItem, SAME_TIME),
                                                ("progress", ReportProgress, REPORTS)):
                        extra = {"note": "进展"} if model is ReportProgress else {}
                        batch = [now_request(model, i.responsible_unit, project_code=i.project_code, item_code=i.item_code,
                                         **extra) for i in ready for _ in range(copies)]
                        await publisher.publish_all([request_out(r) for r in batch])
                        sent[kind] = batch

                        async def settled(batch=batch) -> bool:  # type: ignore[no-untyped-def]
                            found = await repo.outcomes([r.request_id for r in batch])
                            return len(found) == len(batch) and all(o.status != "pending" for o in found)

                        await wait_for(f"every {kind} request decided", settled)
                    await broker.stop()
                    await wait_drained(amqp_url, processes)

                    notifier = NotifierRepository(store)

                    async def delivered() -> bool:
                        return not (await notifier.find(status="pending", limit=1)
                                    or await notifier.find(status="sending", limit=1))

                    await wait_for("every external notice sent", delivered)
                    await asyncio.sleep(1.0)  # a moment more, to catch a late second send

                    # the ledger: one contact and one acceptance per line, every applied report kept
                    for kind in ("contact", "accept"):
                        outcomes = await repo.outcomes([r.request_id for r in sent[kind]])
                        by_line = Counter((o.request["project_code"], o.request["item_code"])
                                          for o in outcomes if o.status == "applied")
                        reasons = Counter(o.reason for o in outcomes if o.status == "refused")
                        assert set(by_line.values()) == {1} and len(by_line) == len(ready), (kind, by_line, reasons)
                        refused = [o for o in outcomes if o.status == "refused"]
                        assert len(refused) == len(ready) * (SAME_TIME - 1) and all(o.reason for o in refused)
                    progress = await repo.outcomes([r.request_id for r in sent["progress"]])
                    assert {o.status for o in progress} == {"applied"}
                    lines = {i.key: i for code in codes for i in await repo.project_items(code)}
                    applied = [o for kind in sent for o in await repo.outcomes([r.request_id for r in sent[kind]])
                               if o.status == "applied"]
                    missing = [o.request_id for o in applied
                               if o.request_id not in lines[f"{o.request['project_code']}/{o.request['item_code']}"].applied]
                    assert not missing, f"{len(missing)} requests answered applied are not in their line"
                    audit = await verify(repo)
                    assert audit.clean, (audit.differ, audit.unjournaled, audit.broken)

                    # each change announced once: one 受理 and one 对接 event per line
                    accepted = Counter(json.loads(m.body)["item_code"] + "@" + json.loads(m.body)["project_code"]
                                       for m in {str(m.message_id): m for m in events if m.type == "item.accepted"}.values())
                    assert set(accepted.values()) == {1} and len(accepted) == len(ready), accepted

                    # each notice sent once, by webhook, e-mail and SMS; nothing failed, nothing parked
                    stored = await notifier.find(limit=100_000)
                    external = [d for d in stored if d["channel"] in ("webhook", "email", "sms")]
                    assert Counter(d["status"] for d in external) == {"delivered": len(external)}, \
                        Counter(d["status"] for d in external)
                    posted = Counter(h["x-zeroerrand-notification-id"] for h, _ in hooks.requests)
                    texted = Counter(json.loads(body)["id"] for _, body in gateway.requests)
                    mailed = Counter(m["X-ZeroErrand-Notification-Id"] for _, m, _ in mailbox.parsed())
                    twice = {i: n for c in (posted, texted, mailed) for i, n in c.items() if n > 1}
                    assert not twice, f"sent more than once: {len(twice)}"
                    assert sum(posted.values()) + sum(texted.values()) + sum(mailed.values()) == len(external)
                    assert {d["channel"] for d in external} == {"webhook", "email", "sms"}
                from tests.faults.harness import queue_depths
                depths = queue_depths(amqp_url)
                parked = {q: depths.get(dead_letter_queue(q).name, (0, 0))[0] for q in CONSUMER_QUEUES}
                assert not any(parked.values()), parked
                for process in processes:
                    process.check_running()
                    problems = [line for line in process.log_text().splitlines() if " ERROR " in line or "Traceback" in line]
                    assert not problems, (process.command, problems[:5])
            finally:
                await connection.close()
                for process in processes:
                    if process.process is not None:
                        process.terminate()
