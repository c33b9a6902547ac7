"""A unit's own system speaks only for its unit, end to end: the evaluation service on the real
RabbitMQ and store, with ``ZEROERRAND_EVALUATION_UNIT_SYSTEMS`` naming a RabbitMQ user as 规划建设局's
system. That user's request in another unit's name is refused with the reason; in its own, applied.
RabbitMQ validates the ``user_id`` the publisher sets against the connection's user."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pytest

from services.common.bus import BrokerPublisher, make_broker, request_out
from services.common.messages import ContactEnterprise
from services.common.settings import BrokerSettings, EvaluationSettings, RouterSettings
from services.common.storage import Store
from services.evaluation.app import create_evaluation
from services.evaluation.ledger import ItemState, item_key
from services.evaluation.repository import MongoLedgerRepository
from services.router.app import create_router
from tests.conftest import ALUMINIUM
from tests.console.test_console_browser import small_project
from tests.integration.conftest import _rabbitmqctl
from tests.integration.test_evaluation import until
from tests.integration.test_router_rabbitmq import sign

pytestmark = pytest.mark.integration
UNIT = "planning_construction_bureau"


async def test_a_unit_system_speaks_only_for_its_unit(amqp_url: str, amqp: object, clean_queues: None,
                                                      rules_copy: Path, store: Store,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    user, password = f"zeroerrand-test-unit-{secrets.token_hex(4)}", secrets.token_hex(12)
    vhost = unquote(urlsplit(amqp_url).path.lstrip("/"))
    _rabbitmqctl("add_user", user, password)
    # configure too: our publisher declares the exchange it publishes to (idempotent)
    _rabbitmqctl("set_permissions", "-p", vhost, user, "^zeroerrand\\.requests$", "^zeroerrand\\.requests$", "^$")
    monkeypatch.setenv("ZEROERRAND_EVALUATION_UNIT_SYSTEMS", json.dumps({user: UNIT}))
    broker = BrokerSettings(amqp_url=amqp_url)
    router = create_router(RouterSettings(rules_dir=rules_copy, watch_rules=False), broker)
    evaluation = create_evaluation(EvaluationSettings(rules_dir=rules_copy, sweep_interval_s=3600), broker, store=store)
    await evaluation.app.start()
    await router.app.start()
    try:
        agreement = small_project(ALUMINIUM, "idn", ("MA-01", "LT-01"))  # LT-01 is 规划建设局's, MA-01 政务服务局's
        code = agreement.project.code
        await sign(amqp, agreement)  # type: ignore[arg-type]
        repo = MongoLedgerRepository(store)
        assert await until(lambda: _ready(repo, code))

        parts = urlsplit(amqp_url)
        as_unit = urlunsplit((parts.scheme, f"{quote(user)}:{password}@{parts.hostname}:{parts.port}", parts.path, "", ""))
        unit_broker = make_broker(as_unit)
        async with unit_broker:
            await unit_broker.connect()
            publisher = BrokerPublisher(unit_broker)
            for_other, for_own = (ContactEnterprise(request_id=str(uuid.uuid4()), requested_at=datetime.now(UTC),
                                                    occurred_at=datetime.now(UTC), requested_by=unit,
                                                    project_code=code, item_code=item)
                                  for unit, item in (("gov_service_bureau", "MA-01"), (UNIT, "LT-01")))
            await publisher.publish_all([request_out(for_other), request_out(for_own)])

        refused = await until(lambda: _settled(repo, for_other.request_id))
        assert refused.status == "refused" and user in refused.reason and "只能以本单位名义" in refused.reason
        applied = await until(lambda: _settled(repo, for_own.request_id))
        assert applied.status == "applied", applied.reason
        assert (await repo.item(item_key(code, "MA-01"))).state is ItemState.READY  # type: ignore[union-attr]
        assert (await repo.item(item_key(code, "LT-01"))).state is ItemState.CONTACTED  # type: ignore[union-attr]
    finally:
        await router.app.stop()
        await evaluation.app.stop()
        _rabbitmqctl("delete_user", user)


async def _ready(repo: MongoLedgerRepository, code: str) -> bool:
    items = await repo.project_items(code)
    return len(items) == 2 and all(i.state is ItemState.READY for i in items)


async def _settled(repo: MongoLedgerRepository, request_id: str) -> object:
    found = await repo.outcome(request_id)
    return found if found is not None and found.status != "pending" else None
