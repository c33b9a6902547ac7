"""Agreement files: every example loads; a bad file is reported by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.agreement_files import load_agreement, to_event
from services.common.yaml_files import RulesError
from tests.conftest import EXAMPLES


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_agreement_loads(path: Path) -> None:
    agreement = load_agreement(path)
    assert agreement.plan and agreement.project.code
    assert to_event(agreement).event_id == to_event(load_agreement(path)).event_id


def test_a_bad_date_and_missing_fields_are_reported_with_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("agreement_id: X\nsigned_on: 2026-13-01\nproject:\n  code: P1\n", encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_agreement(bad)
    found = [str(p) for p in caught.value.problems]
    assert any(p.startswith(f"{bad}:2 signed_on:") and "2026-13-01" in p for p in found)
    assert f"{bad}:3 project.name: 缺少必填字段" in found
    assert f"{bad}:1 plan: 缺少必填字段" in found
