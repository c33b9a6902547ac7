"""One storage test body, run against every store this run reaches: the embedded server always,
and the MongoDB named by ``MONGODB_URL`` when it is set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pymongo import ASCENDING, IndexModel

from services.common.storage import Collection, Store, StoreSchemaError
from services.notifier.compose import ItemView, ProjectView
from services.notifier.repository import COLLECTIONS, NotifierRepository
from services.router.routing import route_agreement
from tests.conftest import COMPUTING, example

NOW = datetime(2026, 5, 9, 8, 0, tzinfo=UTC)


def notification(ident: str, **fields: object) -> dict[str, object]:
    return {"_id": ident, "event_id": f"event-{ident}", "event_type": "item.routed", "project_code": "P-1",
            "item_code": "MA-01", "role": "enterprise", "recipient": "enterprise:91150100MA0N8XK21Q",
            "recipient_name": "企业", "channel": "webhook", "address": "http://127.0.0.1:1/hook", "title": "标题",
            "body": "正文", "status": "pending", "attempts": 0, "last_error": None, "created_at": NOW,
            "updated_at": NOW, "delivered_at": None, "next_attempt_at": NOW, **fields}


async def test_indexes_are_created_and_creating_them_again_is_harmless(store: Store) -> None:
    await store.ensure(COLLECTIONS)
    await store.ensure(COLLECTIONS)
    names = {index["name"] async for index in await store.db["notifications"].list_indexes()}
    assert {"status_1_next_attempt_at_1", "recipient_1_status_1_created_at_-1", "event_id_1"} <= names


async def test_an_index_an_earlier_version_defined_otherwise_is_made_again(store: Store) -> None:
    keys = [("project_code", ASCENDING), ("provider", ASCENDING)]
    await store.db["upgrade"].create_indexes([IndexModel(keys)])  # as an earlier version made it
    await store.db["upgrade"].insert_many([{"project_code": "P", "provider": "a"}, {"project_code": "P", "provider": "b"}])
    await store.ensure([Collection("upgrade", (IndexModel(keys, unique=True, name="one_per_provider"),))])
    info = await store.db["upgrade"].index_information()
    assert info["one_per_provider"]["unique"] and "project_code_1_provider_1" not in info
    await store.db["upgrade"].insert_one({"project_code": "Q", "provider": "a"})
    await store.db["clash"].insert_many([{"project_code": "P", "provider": "a"}, {"project_code": "P", "provider": "a"}])
    await store.db["clash"].create_indexes([IndexModel(keys)])
    with pytest.raises(StoreSchemaError) as caught:  # duplicates under a new unique index: said, not hidden
        await store.ensure([Collection("clash", (IndexModel(keys, unique=True, name="one_per_provider"),))])
    assert "clash" in str(caught.value) and "one_per_provider" in str(caught.value)


async def test_a_redelivered_write_changes_nothing_twice(store: Store) -> None:
    await store.ensure(COLLECTIONS)
    repository = NotifierRepository(store)
    assert await repository.add([notification("a"), notification("b")]) == 2
    assert await repository.add([notification("a", title="changed"), notification("c")]) == 1
    found = await repository.find(project="P-1")
    assert [d["_id"] for d in found] == ["a", "b", "c"]
    assert found[0]["title"] == "标题"


async def test_due_notifications_are_claimed_once_under_a_lease(store: Store) -> None:
    await store.ensure(COLLECTIONS)
    repository = NotifierRepository(store)
    await repository.add([notification("due"), notification("later", next_attempt_at=NOW + timedelta(hours=1)),
                          notification("inbox", channel="inbox", status="unread", next_attempt_at=None)])
    claimed = await repository.claim_due(NOW, timedelta(seconds=30))
    assert claimed is not None and claimed["_id"] == "due" and claimed["status"] == "sending"
    assert await repository.claim_due(NOW, timedelta(seconds=30)) is None  # leased, and "later" is not due
    reclaimed = await repository.claim_due(NOW + timedelta(seconds=31), timedelta(seconds=30))
    assert reclaimed is not None and reclaimed["_id"] == "due"  # the lease ran out: a crashed attempt is retried


async def test_attempts_end_delivered_or_finally_failed(store: Store) -> None:
    await store.ensure(COLLECTIONS)
    repository = NotifierRepository(store)
    await repository.add([notification("ok"), notification("bad")])
    await repository.delivered("ok", 1, NOW)
    await repository.attempt_failed("bad", 1, "HTTP 500", NOW, NOW + timedelta(seconds=2))
    assert [d["status"] for d in await repository.find(status="pending")] == ["pending"]
    await repository.attempt_failed("bad", 2, "HTTP 503", NOW, None)
    [failed] = await repository.find(status="failed")
    assert (failed["_id"], failed["attempts"], failed["last_error"]) == ("bad", 2, "HTTP 503")
    [delivered] = await repository.find(status="delivered")
    assert delivered["delivered_at"] == NOW
    assert {d["_id"] for d in await repository.find(recipient="91150100MA0N8XK21Q")} == {"bad", "ok"}


async def test_read_model_remembers_projects_and_items(store: Store, engine: object) -> None:
    await store.ensure(COLLECTIONS)
    repository = NotifierRepository(store)
    result = route_agreement(example(COMPUTING, suffix="store"), engine)  # type: ignore[arg-type]
    assert result.started is not None
    await repository.apply(repository.remember(result.started)[0])
    for routed in result.routed:
        await repository.apply(repository.remember(routed)[0])
        await repository.apply(repository.remember(routed)[0])  # redelivery: same state
    code = result.started.project.code
    project = await repository.project(code)
    assert project == ProjectView(code, result.started.project.name, result.started.project.enterprise,
                                  "econ_dev_bureau")
    assert await repository.item(code, "PL-03") == ItemView(code, "PL-03", "固定资产投资项目节能审查", "zhenglian_company")
    assert await repository.item(code, "ZZ-01") is None
    assert await store.db["notifier_items"].count_documents({"project_code": code}) == 10


async def test_an_inbox_filtered_by_a_project_outside_the_accounts_own_shows_and_marks_none(store: Store) -> None:
    """A 招引单位 account reads its unit's notices about the projects it brought in (``projects``);
    asking for another project must give nothing, not every one of its projects (nor mark them read)."""
    repo = NotifierRepository(store)
    await store.ensure(COLLECTIONS)
    await store.db["notifications"].insert_many([
        notification(f"in-{code}", channel="inbox", status="unread", recipient="unit:econ_dev_bureau",
                     project_code=code) for code in ("P-OWN", "P-OTHER")])
    own = await repo.inbox("unit:econ_dev_bureau", projects=["P-OWN"])
    assert [n["project_code"] for n in own] == ["P-OWN"]
    assert await repo.inbox("unit:econ_dev_bureau", project="P-OWN", projects=["P-OWN"]) == own
    assert await repo.inbox("unit:econ_dev_bureau", project="P-OTHER", projects=["P-OWN"]) == []
    assert await repo.mark_all_read("unit:econ_dev_bureau", NOW, project="P-OTHER", projects=["P-OWN"]) == 0
    assert len(await repo.inbox("unit:econ_dev_bureau", projects=["P-OWN"], unread_only=True)) == 1
