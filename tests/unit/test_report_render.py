"""Rendering the annual evaluation: the HTML page, the CSV files and the terminal table.

The score is the 综合测评 of the year; a provider without any 测评 is 未评价: never drawn as failing, never on the
exit list, listed on its own.
"""

from __future__ import annotations

import csv
import re
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

from services.common.domain import ServiceMode, Stage
from services.evaluation.annual import (
    AnnualReport,
    BlockerCause,
    LateRectification,
    Opinion,
    ProviderScore,
    Response,
    StageTimeliness,
    Status,
)
from services.evaluation.report import (
    FAIL_FILL,
    OPINION_COLUMNS,
    PASS_FILL,
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
UNRATED = "和林格尔新区自然资源局"

NASTY_COMMENT = '材料要求<b>不一致</b> & "多跑了一次" <script>alert(1)</script>'
NASTY_ESCAPED = "材料要求&lt;b&gt;不一致&lt;/b&gt; &amp; &quot;多跑了一次&quot; &lt;script&gt;alert(1)&lt;/script&gt;"

LATE = LateRectification(
    assessment_id="asm-0042", project_code="HL-2026-007", rectify_by=date(2026, 5, 10), rectified_on=date(2026, 5, 20)
)
STILL_OPEN = LateRectification(
    assessment_id="asm-0051", project_code="HL-2026-011", rectify_by=date(2026, 9, 1), rectified_on=None
)


def _score(
    provider: str,
    name: str,
    mode: ServiceMode,
    score: float | None,
    status: Status,
    *,
    opinions: tuple[Opinion, ...] = (),
    late: tuple[LateRectification, ...] = (),
    alone: str | None = None,
) -> ProviderScore:
    evaluator = "econ_dev_bureau" if mode is ServiceMode.ERRAND else "gov_service_bureau"
    rated = score is not None
    return ProviderScore(
        provider=provider,
        provider_name=name,
        mode=mode,
        evaluator=evaluator,
        items=20,
        open_items=1,
        service_on_time=18,
        service_late=2,
        statutory_on_time=16,
        statutory_late=3,
        assessments=6 if rated else 0,
        enterprise=score,
        recruiting_unit=score,
        questionnaire=score,
        service_rate=90.0,
        statutory_rate=84.2,
        rectification_rate=50.0 if late else None,
        bad=2 if late else 0,
        rectified=sum(1 for entry in late if entry.rectified_on is not None),
        late_rectifications=late,
        opinions=opinions,
        score=score,
        status=status,
        statutory_open_late=1,
        projects=4,
        enterprise_response=Response(4, 3 if rated else 0),
        recruiting_response=Response(3, 3 if rated and alone is None else 0),
        single_group=alone,
    )


def _report() -> AnnualReport:
    return AnnualReport(
        year=2026,
        evaluator="gov_service_bureau",
        evaluator_name="和林格尔新区政务服务局",
        generated_at=datetime(2027, 1, 5, 9, 30),
        pass_mark=70.0,
        weights={"questionnaire": 1.0, "service_on_time": 0.0, "statutory_on_time": 0.0, "rectification": 0.0},
        rater_weights={"enterprise": 0.6, "recruiting_unit": 0.4},
        questionnaire=(("服务态度", 30.0), ("办理效率", 40.0), ("政策解读<准确>", 30.0)),
        scores=(
            _score(
                "zhenglian_company",
                FAILING,
                ServiceMode.ERRAND,
                69.9,
                "不合格",
                opinions=(
                    Opinion(project_code="HL-2026-007", rater="服务对象", total=55.0, comment=NASTY_COMMENT),
                    Opinion(project_code="HL-2026-011", rater="项目招引单位", total=84.8, comment="响应及时"),
                ),
                late=(LATE, STILL_OPEN),
            ),
            _score("planning_construction_bureau", PASSING, ServiceMode.JOINT, 70.0, "合格", alone="服务对象"),
            _score(
                "gov_service_bureau",
                BEST,
                ServiceMode.ASSIST,
                85.2,
                "合格",
                opinions=(Opinion(project_code="HL-2026-003", rater="enterprise", total=92.5, comment="帮办专员很专业"),),
            ),
            _score("natural_resources_bureau", UNRATED, ServiceMode.JOINT, None, "未评价"),
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
    assert match is not None, section_id
    return match.group(1)


def _text(fragment: str) -> str:
    return re.sub(r"<[^>]+>", "", fragment)


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", page, re.S)


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


# ---------------------------------------------------------------------------------------------------------------------
# HTML


def test_html_has_title_sections_charts_and_pass_line() -> None:
    page = render_html(_report())
    assert page.startswith("<!DOCTYPE html>") and '<html lang="zh-CN">' in page and '<meta charset="utf-8">' in page
    assert f"<title>{TITLE}</title>" in page and f"<h1>{TITLE}</h1>" in page
    for name in (FAILING, PASSING, BEST, UNRATED):
        assert name in page
    for section in (
        "评价说明",
        "服务单位得分",
        "各服务单位得分与合格线",
        "退出/整改名单",
        "未评价单位",
        "逾期整改",
        "各审批阶段按时办结率",
        "堵点/卡点成因",
        "评价意见",
    ):
        assert f"<h2>{section}</h2>" in page
    assert page.count("<svg") == 3
    assert "合格线 70</text>" in page and 'stroke-dasharray="6 4"' in page
    assert "专业跑腿" in page and "联审联批" in page and "帮办代办" in page  # modes in Chinese
    for value in ("69.9", "70.0", "85.2"):
        assert f">{value}</text>" in page  # the score at the end of each bar
    assert "共 3 次，未疏通 1 次" in page and "90.0%（9/10）" in page
    assert "2027 年法定节假日安排尚未录入" in page and 'class="warning"' in page


def test_html_is_self_contained() -> None:
    page = render_html(_report())
    for forbidden in ("<script", "<link", "http://", "https://", "@import", "url(", "<iframe", "<img"):
        assert forbidden not in page


def test_explanation_states_questionnaire_weights_pass_mark_and_unevaluated() -> None:
    text = _text(_section(render_html(_report()), "explanation"))
    assert "70 分及以上为合格" in text
    for indicator, points in (("服务态度", "30"), ("办理效率", "40")):
        assert f"{indicator}{points}" in text  # indicator and its points in one table row
    assert "政策解读&lt;准确&gt;30" in text and "合计100" in text
    assert "服务对象（企业） 60%" in text and "项目招引单位 40%" in text
    assert "综合测评 100%" in text
    for reference in ("首问响应按时率", "承诺时限按时率", "差评整改率"):
        assert f"{reference} 仅供参考，不计分" in text
    assert "未评价不是不合格" in text
    assert "经济发展招商服务局负责评价专业跑腿服务" in text


def test_explanation_shows_a_ledger_figure_that_counts() -> None:
    report = replace(_report(), weights={"questionnaire": 0.8, "statutory_on_time": 0.2})
    text = _text(_section(render_html(report), "explanation"))
    assert "综合测评 80%" in text and "承诺时限按时率 20%" in text
    assert "首问响应按时率 仅供参考，不计分" in text and "差评整改率 仅供参考，不计分" in text


def test_score_chart_draws_only_evaluated_providers_and_red_only_for_the_failing_one() -> None:
    page = render_html(_report())
    chart = _svgs(page)[0]
    assert FAILING in chart and PASSING in chart and BEST in chart
    assert UNRATED not in chart
    assert chart.count("<rect") == 3
    assert page.count(FAIL_FILL) == 1
    assert re.search(rf'<rect [^>]*fill="{FAIL_FILL}"[^>]*><title>{FAILING}（专业跑腿）：69\.9 分，不合格', chart)
    assert re.search(rf'<rect [^>]*fill="{PASS_FILL}"[^>]*><title>{PASSING}（联审联批）：70\.0 分，合格', chart)
    note = re.search(r'<p class="chart-note"[^>]*>(.*?)</p>', page, re.S)
    assert note is not None and UNRATED in note.group(1) and "未评价" in note.group(1)
    assert FAIL_FILL not in note.group(0)


def test_only_unevaluated_providers_draws_no_chart_and_nothing_red() -> None:
    report = replace(_report(), scores=(_report().scores[3],))
    page = render_html(report)
    assert page.count("<svg") == 2  # stages and blockers only
    assert FAIL_FILL not in page
    assert "各服务单位得分与合格线：无数据" in page and UNRATED in _section(page, "unevaluated")
    assert "<p>无</p>" in _section(page, "exit-list")


def test_score_table_has_the_csv_columns_and_marks_unevaluated_grey() -> None:
    page = render_html(_report())
    table = re.search(r'<table class="wide">(.*?)</table>', page, re.S)
    assert table is not None
    assert re.findall(r"<th>(.*?)</th>", table.group(1)) == list(SCORE_COLUMNS)
    unrated_row = re.search(rf'<tr class="([^"]*)"><td>{UNRATED}</td>(.*?)</tr>', table.group(1))
    assert unrated_row is not None and unrated_row.group(1) == "unevaluated"
    assert unrated_row.group(2).endswith('<td class="unevaluated">未评价</td>')
    assert re.search(rf'<tr class="fail"><td>{FAILING}</td>', table.group(1))
    assert "共 4 项，合格 2 项，不合格 1 项，未评价 1 项。" in page


def test_exit_list_names_exactly_the_failing_provider() -> None:
    exits = _section(render_html(_report()), "exit-list")
    assert FAILING in exits and "69.9 分" in exits and "低于合格线 0.1 分" in exits
    for name in (PASSING, BEST, UNRATED):
        assert name not in exits
    assert "无" not in _text(exits).replace("退出/整改名单", "")


def test_unevaluated_section_lists_the_provider_with_the_reason() -> None:
    section = _section(render_html(_report()), "unevaluated")
    text = _text(section)
    assert f"{UNRATED}（联审联批" in text and "本年度无综合测评" in text
    for name in (FAILING, PASSING, BEST):
        assert name not in section
    assert FAIL_FILL not in section and "不合格" not in text.replace("不视为不合格", "")


def test_late_rectifications_are_listed() -> None:
    section = _section(render_html(_report()), "late-rectifications")
    rows = re.findall(r"<tr>(.*?)</tr>", section)[1:]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert cells == [
        [FAILING, "专业跑腿", "asm-0042", "HL-2026-007", "2026-05-10", "2026-05-20"],
        [FAILING, "专业跑腿", "asm-0051", "HL-2026-011", "2026-09-01", "未整改"],
    ]


def test_opinions_are_listed_per_provider_and_escaped() -> None:
    page = render_html(_report())
    section = _section(page, "opinions")
    assert NASTY_COMMENT not in page and "<b>" not in page
    assert NASTY_ESCAPED in section
    headings = re.findall(r"<h3>(.*?)</h3>", section)
    assert headings == [f"{FAILING}（专业跑腿）", f"{PASSING}（联审联批）", f"{BEST}（帮办代办）", f"{UNRATED}（联审联批）"]
    failing_part = section.split("<h3>")[1]
    assert "HL-2026-007" in failing_part and "服务对象" in failing_part and "55.0" in failing_part
    assert "项目招引单位" in failing_part and "响应及时" in failing_part and "84.8" in failing_part
    best_part = section.split("<h3>")[3]
    assert "帮办专员很专业" in best_part and "服务对象" in best_part and "92.5" in best_part  # rater code in Chinese
    assert "无评价意见" in section.split("<h3>")[2]


def test_html_escapes_special_characters_in_names() -> None:
    nasty = 'A&B <script>alert("x")</script> 公司'
    report = replace(_report(), scores=(_score("nasty", nasty, ServiceMode.ERRAND, 50.0, "不合格"),))
    page = render_html(report)
    assert nasty not in page and "<script" not in page
    assert "A&amp;B &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; 公司" in page


def test_html_escapes_unevaluated_names() -> None:
    nasty = "<i>未评价</i> & 公司"
    report = replace(_report(), scores=(_score("nasty", nasty, ServiceMode.JOINT, None, "未评价"),))
    page = render_html(report)
    assert nasty not in page and "&lt;i&gt;未评价&lt;/i&gt; &amp; 公司" in page


# ---------------------------------------------------------------------------------------------------------------------
# CSV


def test_csv_have_bom_header_and_rows(tmp_path: Path) -> None:
    paths = write_csv(_report(), tmp_path / "out")
    assert [p.name for p in paths] == ["scores.csv", "stages.csv", "blockers.csv", "opinions.csv", "uncounted.csv"]
    for path in paths:
        assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = _read_csv(paths[0])
    assert rows[0] == [
        "单位", "服务方式", "评价单位", "事项数", "未办结", "首问按时", "首问超时", "承诺时限内办结", "超时办结",
        "超时未办结", "服务项目数", "服务对象应评/已评", "招引单位应评/已评", "测评回收率（%）",
        "测评数", "服务对象测评均分", "招引单位测评均分", "综合测评得分", "首问响应按时率（参考）",
        "承诺时限按时率（参考）", "差评整改率（参考）", "差评", "已整改", "逾期整改", "总分", "单一类别测评", "结论",
    ]  # fmt: skip
    assert tuple(rows[0]) == SCORE_COLUMNS
    by_name = {row[0]: dict(zip(SCORE_COLUMNS, row, strict=True)) for row in rows[1:]}
    assert list(by_name) == [FAILING, PASSING, BEST, UNRATED]
    assert [by_name[name]["总分"] for name in by_name] == ["69.9", "70.0", "85.2", "—"]
    assert [by_name[name]["结论"] for name in by_name] == ["不合格", "合格", "合格", "未评价"]
    assert rows[1] == [
        FAILING, "专业跑腿", "经济发展招商服务局", "20", "1", "18", "2", "16", "3", "1", "4", "4/3", "3/3", "85.7",
        "6", "69.9", "69.9", "69.9", "90.0", "84.2", "50.0", "2", "1", "2", "69.9", "", "不合格",
    ]  # fmt: skip
    assert by_name[PASSING]["单一类别测评"] == "仅服务对象" and by_name[PASSING]["测评回收率（%）"] == "42.9"
    unrated = by_name[UNRATED]
    assert unrated["评价单位"] == "政务服务局" and unrated["测评数"] == "0"
    assert unrated["服务对象测评均分"] == unrated["综合测评得分"] == unrated["差评整改率（参考）"] == "—"
    assert _read_csv(paths[1])[1] == ["市场准入", "10", "9", "90.0"]
    assert _read_csv(paths[2]) == [["堵点/卡点成因", "次数", "未疏通"], ["材料需外地机关盖章", "3", "1"]]


def test_opinions_csv_lists_every_opinion_unescaped(tmp_path: Path) -> None:
    paths = write_csv(_report(), tmp_path)
    rows = _read_csv(paths[3])
    assert tuple(rows[0]) == OPINION_COLUMNS == ("单位", "服务方式", "项目", "评价人", "测评得分", "评价意见")
    assert rows[1:] == [
        [FAILING, "专业跑腿", "HL-2026-007", "服务对象", "55.0", NASTY_COMMENT],
        [FAILING, "专业跑腿", "HL-2026-011", "项目招引单位", "84.8", "响应及时"],
        [BEST, "帮办代办", "HL-2026-003", "服务对象", "92.5", "帮办专员很专业"],
    ]


def test_write_report_creates_directory_with_page_and_csvs(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    paths = write_report(_report(), target)
    assert [p.name for p in paths] == ["index.html", "scores.csv", "stages.csv", "blockers.csv", "opinions.csv",
                                       "uncounted.csv"]
    assert all(p.parent == target and p.is_file() for p in paths)
    assert (target / "index.html").read_text(encoding="utf-8") == render_html(_report())


# ---------------------------------------------------------------------------------------------------------------------
# terminal


def _separator_columns(line: str) -> list[int]:
    """Display columns at which each “ | ” separator starts."""
    return [display_width(line[: m.start()]) for m in re.finditer(r" \| ", line)]


def test_summary_table_rows_alignment_and_last_two_lines() -> None:
    lines = summary_table(_report()).splitlines()
    assert lines[0] == TITLE
    assert "注意：2027 年法定节假日安排尚未录入，按时办结按周末推算。" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("单位"))
    assert [cell.strip() for cell in lines[header].split(" | ")] == [
        "单位", "服务方式", "测评数", "回收率（%）", "总分", "结论"]
    rows = [[cell.strip() for cell in line.split(" | ")] for line in lines[header + 2 : header + 6]]
    assert rows == [  # a unit nobody rated shows its response rate: 0 of 7 asked answered
        [FAILING, "专业跑腿", "6", "85.7", "69.9", "不合格"],
        [PASSING, "联审联批", "6", "42.9", "70.0", "合格（仅服务对象测评）"],
        [BEST, "帮办代办", "6", "85.7", "85.2", "合格"],
        [UNRATED, "联审联批", "0", "0.0", "未评价", "未评价"],
    ]
    expected = _separator_columns(lines[header])
    assert len(expected) == 5
    for row in lines[header + 2 : header + 6]:
        assert _separator_columns(row) == expected
    rule = lines[header + 1]
    assert [display_width(rule[: m.start()]) for m in re.finditer(r"-\+-", rule)] == expected
    assert lines[-2] == f"退出/整改名单：{FAILING}（专业跑腿，69.9 分）"
    assert lines[-1] == f"未评价：{UNRATED}（联审联批）"


def test_summary_exit_list_joins_several_and_says_none() -> None:
    report = _report()
    two_failing = replace(
        report,
        scores=(*report.scores, _score("x_bureau", "某局", ServiceMode.ASSIST, 40.0, "不合格")),
    )
    assert summary_table(two_failing).splitlines()[-2] == (
        f"退出/整改名单：{FAILING}（专业跑腿，69.9 分）；某局（帮办代办，40.0 分）"
    )
    all_pass = replace(report, scores=report.scores[1:3])
    assert summary_table(all_pass).splitlines()[-2:] == ["退出/整改名单：无", "未评价：无"]


def test_display_width_counts_cjk_double() -> None:
    assert display_width("abc") == 3 and display_width("政务") == 4 and display_width("Ａ1") == 3


# ---------------------------------------------------------------------------------------------------------------------
# empty report


def test_empty_report_renders_no_data() -> None:
    page = render_html(_empty())
    assert "无数据" in page and "<svg" not in page
    for section in ("exit-list", "unevaluated", "late-rectifications", "opinions"):
        assert "<p>无</p>" in _section(page, section)
    assert 'class="warning"' not in page
    table = summary_table(_empty()).splitlines()
    assert "（无数据）" in table and table[-2:] == ["退出/整改名单：无", "未评价：无"]


def test_empty_report_writes_header_only_csvs(tmp_path: Path) -> None:
    paths = write_report(_empty(), tmp_path)
    assert _read_csv(paths[1]) == [list(SCORE_COLUMNS)]
    assert _read_csv(paths[4]) == [list(OPINION_COLUMNS)]


def test_render_page_to_file(tmp_path: Path) -> None:
    """The page written to a file is what render_html gives (and what a browser opens: see the module docstring)."""
    index = write_report(_report(), tmp_path)[0]
    text = index.read_text(encoding="utf-8")
    assert text == render_html(_report()) and text.endswith("</html>\n")
