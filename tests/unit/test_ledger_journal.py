"""The journal of the ledger: every line of a simulated year is exactly what its journal folds to,
every request applied to it is recorded in its entries, and ``ledger verify`` finds and repairs a
line whose document is not its journal's last version."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.evaluation.audit import verify
from services.evaluation.journal import JournalError, base_entry, change_entry, fold
from services.evaluation.ledger import new_item
from services.evaluation.repository import ITEMS, MemoryLedgerRepository, item_doc
from services.evaluation.scoring import EvaluationConfig
from tests.unit.ledger_kit import routed
from tests.unit.test_simulated_year import simulate

NOW = datetime(2026, 5, 6, tzinfo=UTC)


async def test_every_line_of_a_simulated_year_is_its_journal_folded() -> None:
    simulation = await simulate(2026, EvaluationConfig())
    repo = simulation.book.repo
    assert isinstance(repo, MemoryLedgerRepository)
    items = await repo.all_items()
    assert len(items) > 1000
    for item in items:
        journal = await repo.journal(item.key)
        assert [e["version"] for e in journal] == list(range(item.version + 1))
        assert fold(journal) == item
        recorded = [e["request_id"] for e in journal if e["request_id"]]
        assert recorded == [h.request_id for h in item.history if h.request_id]
    audit = await verify(repo)
    assert audit.clean and audit.lines == len(items) and audit.projects == len({i.project_code for i in items})


async def test_verify_finds_a_line_that_is_not_its_journal_and_repairs_it() -> None:
    repo = MemoryLedgerRepository()
    item = new_item(routed("V-1", "X-01", date(2026, 5, 6)))
    await repo.add_item(item)
    moved = item.model_copy(update={"results": ("证书",)})
    assert await repo.save_item(moved, item)
    repo.tables[ITEMS.name][item.key] = item_doc(item)  # as if a writer stopped before the document
    audit = await verify(repo)
    assert audit.differ == [item.key] and not audit.clean and not audit.repaired
    audit = await verify(repo, repair=True)
    assert audit.repaired == [item.key]
    assert await repo.item(item.key) == moved.model_copy(update={"version": 1}) and (await verify(repo)).clean


def test_a_journal_with_a_version_missing_or_no_base_is_refused() -> None:
    item = new_item(routed("V-2", "X-01", date(2026, 5, 6)))
    one = item.model_copy(update={"version": 1, "results": ("a",)})
    two = one.model_copy(update={"version": 2, "results": ("b",)})
    with pytest.raises(JournalError, match="no base"):
        fold([change_entry(item, one, NOW)])
    with pytest.raises(JournalError, match="version 1 is missing"):
        fold([base_entry(item, NOW), change_entry(one, two, NOW)])
    with pytest.raises(JournalError, match="may only grow"):
        change_entry(one, two.model_copy(update={"history": ()}), NOW)
