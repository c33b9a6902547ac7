"""The demo's year of agreements plans what a real project would: 备案 (PL-01) or 核准 (PL-02), never both."""

from __future__ import annotations

from datetime import date

from services.common.rule_files import load_rulebook
from services.demo.agreements import year_of_agreements
from tests.conftest import RULES


def test_every_demo_project_is_either_filed_or_approved_never_both() -> None:
    book = load_rulebook(RULES)
    agreements = year_of_agreements(book, 2026, 300, 1, [date(2026, 3, 2), date(2026, 6, 1), date(2026, 9, 1)])
    kinds = []
    for agreement in agreements:
        planned = {line.item for line in agreement.plan}
        assert not {"PL-01", "PL-02"} <= planned, f"{agreement.project.code} plans both 备案 and 核准"
        kinds.append("PL-02" in planned)
    assert 0 < sum(kinds) < len(kinds) / 2  # some are approved (核准), most are filed (备案)
