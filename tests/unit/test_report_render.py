"""Rendering the annual evaluation: the HTML page, the CSV files and the terminal table."""

from __future__ import annotations

import csv
import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from services.common.domain import ServiceMode, Stage
from services.evaluation.annual import AnnualReport, BlockerCause, ProviderScore, StageTimeliness
from services.evaluation.report import (
    FAIL_FILL,
    SCORE_COLUMNS,
    display_width,
    render_html,
    summary_table,
    write_csv,
    write_report,
)

TITLE = "2026 年度“企业零跑腿”服务综合评价报告（评价单位：和林格尔新区政务服务局）"
FAILING = "内蒙古政联招商服务有限公司"
PASSING = "和林格尔新区规划建设局"
BEST = "和林格尔新区政务服务局"


def _score(provider: str, name: str, mode: ServiceMode, score: float, *, passed: bool) -> ProviderScore:
    evaluator = "econ_dev_bureau" if mode is ServiceMode.ERRAND else "gov_service_bureau"
    return ProviderScore(
        provider=provider,
        provider_name=name,
        mode=mode,
        evaluator=evaluator,
        items=20,
        on_time=16,
        late=3,
        open_items=1,
        ratings=18,
        bad_ratings=2,
        rectified=1,
        satisfaction=score,
        timeliness=80.0,
        rectification=50.0,
        score=score,
        passed=passed,
    )


def _report() -> AnnualReport:
    return AnnualReport(
        year=2026,
        evaluator="gov_service_bureau",
        evaluator_name="和林格尔新区政务服务局",
        generated_at=datetime(2027, 1, 5, 9, 30),
        pass_mark=70.0,
        weights={"satisfaction": 0.5, "timeliness": 0.3, "rectification": 0.2},
        scores=(
            _score("zhenglian_company", FAILING, ServiceMode.ERRAND, 69.9, passed=False),
            _score("planning_construction_bureau", PASSING, ServiceMode.JOINT, 70.0, passed=True),
            _score("gov_service_bureau", BEST, ServiceMode.ASSIST, 85.2, passed=True),
        ),
        stages=(
            StageTimeliness(stage=Stage.MARKET_ACCESS, stage_name="市场准入", items=10, on_time=9, rate=90.0),
            StageTimeliness(stage=Stage.LAND_TRANSFER, stage_name="土地使用权出让", items=4, on_time=3, rate=75.0),
        ),
        blockers=(BlockerCause(cause="材料需外地机关盖章", count=3, open=1),),
        calendar_warnings=("2027 年法定节假日安排尚未录入，按时办结按周末推算。",),
    )


def _empty() -> AnnualReport:
    return replace(_report(), scores=(), stages=(), blockers=(), calendar_warnings=())


def _section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', page, re.S)
    assert match is not None
    return match.group(1)


def test_html_has_title_providers_chart_and_pass_line() -> None:
    page = render_html(_report())
    assert page.startswith("<!DOCTYPE html>") and '<html lang="zh-CN">' in page and '<meta charset="utf-8">' in page
    assert f"<title>{TITLE}</title>" in page and f"<h1>{TITLE}</h1>" in page
    for name in (FAILING, PASSING, BEST):
        assert name in page
    for section in (
        "评价说明",
        "服务单位得分",
        "各服务单位得分与合格线",
        "退出/整改名单",
        "各审批阶段按时办结率",
        "堵点/卡点成因",
    ):
        assert f"<h2>{section}</h2>" in page
    assert page.count("<svg") == 3
    assert "合格线 70</text>" in page and 'stroke-dasharray="6 4"' in page
    assert "50%" in page and "30%" in page and "20%" in page  # weights as percentages
    assert "专业跑腿" in page and "联审联批" in page and "帮办代办" in page  # modes in Chinese
    assert "经济发展招商服务局负责评价专业跑腿服务" in page
    for value in ("69.9", "70.0", "85.2"):
        assert f">{value}</text>" in page  # the score at the end of each bar
    assert "共 3 次，未疏通 1 次" in page and "90.0%（9/10）" in page
    assert "2027 年法定节假日安排尚未录入" in page and 'class="warning"' in page


def test_html_is_self_contained() -> None:
    page = render_html(_report())
    for forbidden in ("<script", "<link", "http://", "https://", "@import", "url("):
        assert forbidden not in page


def test_failing_bar_is_red_once_per_failing_provider() -> None:
    page = render_html(_report())
    assert page.count(FAIL_FILL) == 1
    assert re.search(rf'<rect [^>]*fill="{FAIL_FILL}"[^>]*><title>{FAILING}（专业跑腿）：69\.9 分，不合格', page)
    two_failing = replace(_report(), scores=tuple(replace(s, passed=s.score >= 80) for s in _report().scores))
    assert render_html(two_failing).count(FAIL_FILL) == 2


def test_exit_list_names_exactly_the_failing_provider() -> None:
    exits = _section(render_html(_report()), "exit-list")
    assert FAILING in exits and "69.9 分" in exits
    assert PASSING not in exits and BEST not in exits
    assert "无" not in re.sub(r"<[^>]+>", "", exits).replace("退出/整改名单", "")


def test_html_escapes_special_characters() -> None:
    nasty = 'A&B <script>alert("x")</script> 公司'
    report = replace(_report(), scores=(_score("nasty", nasty, ServiceMode.ERRAND, 50.0, passed=False),))
    page = render_html(report)
    assert nasty not in page and "<script" not in page
    assert "A&amp;B &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; 公司" in page


def test_csv_have_bom_header_and_the_same_scores(tmp_path: Path) -> None:
    paths = write_csv(_report(), tmp_path / "out")
    assert [p.name for p in paths] == ["scores.csv", "stages.csv", "blockers.csv"]
    for path in paths:
        assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with paths[0].open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == SCORE_COLUMNS
    by_name = {row[0]: row for row in rows[1:]}
    assert [by_name[name][11] for name in (FAILING, PASSING, BEST)] == ["69.9", "70.0", "85.2"]
    assert [by_name[name][12] for name in (FAILING, PASSING, BEST)] == ["不合格", "合格", "合格"]
    assert by_name[FAILING][1] == "专业跑腿"
    stages = paths[1].read_text(encoding="utf-8-sig").splitlines()
    assert stages[0].startswith("审批阶段,") and stages[1] == "市场准入,10,9,90.0"
    blockers = paths[2].read_text(encoding="utf-8-sig").splitlines()
    assert blockers == ["堵点/卡点成因,次数,未疏通", "材料需外地机关盖章,3,1"]


def test_write_report_creates_directory_with_page_and_csvs(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    paths = write_report(_report(), target)
    assert [p.name for p in paths] == ["index.html", "scores.csv", "stages.csv", "blockers.csv"]
    assert all(p.parent == target and p.is_file() for p in paths)
    assert (target / "index.html").read_text(encoding="utf-8") == render_html(_report())


def _separator_columns(line: str) -> list[int]:
    """Display columns at which each “ | ” separator starts."""
    return [display_width(line[: m.start()]) for m in re.finditer(r" \| ", line)]


def test_summary_table_aligns_by_display_width() -> None:
    lines = summary_table(_report()).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("单位"))
    rows = lines[header + 2 : header + 5]
    assert [row.split(" | ")[0].strip() for row in rows] == [FAILING, PASSING, BEST]
    expected = _separator_columns(lines[header])
    assert len(expected) == 11
    for row in rows:
        assert _separator_columns(row) == expected
    rule = lines[header + 1]
    assert [display_width(rule[: m.start()]) for m in re.finditer(r"-\+-", rule)] == expected
    assert lines[-1] == f"退出/整改名单：{FAILING}（专业跑腿，69.9 分）"


def test_display_width_counts_cjk_double() -> None:
    assert display_width("abc") == 3 and display_width("政务") == 4 and display_width("Ａ1") == 3


def test_empty_report_renders_no_data() -> None:
    page = render_html(_empty())
    assert "无数据" in page and "<svg" not in page
    assert "<p>无</p>" in _section(page, "exit-list")
    assert 'class="warning"' not in page
    table = summary_table(_empty()).splitlines()
    assert "（无数据）" in table and table[-1] == "退出/整改名单：无"


def test_empty_report_writes_header_only_csvs(tmp_path: Path) -> None:
    paths = write_report(_empty(), tmp_path)
    with paths[1].open(encoding="utf-8-sig", newline="") as handle:
        assert list(csv.reader(handle)) == [list(SCORE_COLUMNS)]
