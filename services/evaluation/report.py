"""Rendering the annual comprehensive evaluation (年度综合评价) for people: an HTML page, CSV files, a terminal table.

Pure: no network, no external scripts, fonts or style sheets. Every text a person reads is in Chinese, and every
text that comes from the data is escaped with :func:`html.escape` before it goes into the page.

The score is the 综合测评 of the year; the ledger's figures are shown beside it for reference. A provider without any
测评 (未评价) has no score: it is never drawn or coloured as failing, never on the exit list, and listed on its own.
"""

from __future__ import annotations

import csv
import html
import math
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from services.common.domain import (
    ECON_DEV_BUREAU,
    EVALUATOR_BY_MODE,
    GOV_SERVICE_BUREAU,
    MODE_NAMES_ZH,
    NEW_AREA_TIME,
    STAGE_NAMES_ZH,
)
from services.evaluation.annual import AnnualReport, BlockerCause, LateRectification, ProviderScore, StageTimeliness

__all__ = [
    "BLOCKER_COLUMNS",
    "FAIL_FILL",
    "OPINION_COLUMNS",
    "PASS_FILL",
    "SCORE_COLUMNS",
    "STAGE_COLUMNS",
    "UNEVALUATED_FILL",
    "render_html",
    "report_tables",
    "summary_table",
    "write_csv",
    "write_report",
]

# Colours of the score chart. FAIL_FILL is used for nothing but the bars of providers evaluated below the pass mark;
# a provider without any 测评 (未评价) is never drawn as a bar and is shown in grey.
FAIL_FILL = "#d93025"
PASS_FILL = "#2e7d32"
UNEVALUATED_FILL = "#6e7781"
STAGE_FILL = "#1f6fb2"
BLOCKER_FILL = "#f4b183"
BLOCKER_OPEN_FILL = "#c55a11"

NO_DATA = "无数据"
LOCAL = NEW_AREA_TIME
UNEVALUATED = "未评价"
UNEVALUATED_REASON = "本年度无综合测评"
NOT_RECTIFIED = "未整改"

SCORE_COLUMNS: tuple[str, ...] = (
    "单位",
    "服务方式",
    "评价单位",
    "事项数",
    "未办结",
    "首问按时",
    "首问超时",
    "承诺时限内办结",
    "超时办结",
    "超时未办结",
    "服务项目数",
    "服务对象应评/已评",
    "招引单位应评/已评",
    "测评回收率（%）",
    "测评数",
    "服务对象测评均分",
    "招引单位测评均分",
    "综合测评得分",
    "首问响应按时率（参考）",
    "承诺时限按时率（参考）",
    "差评整改率（参考）",
    "差评",
    "已整改",
    "逾期整改",
    "总分",
    "单一类别测评",
    "结论",
)
STAGE_COLUMNS: tuple[str, ...] = ("审批阶段", "办结事项数", "按时办结", "按时办结率（%）")
BLOCKER_COLUMNS: tuple[str, ...] = ("堵点/卡点成因", "次数", "未疏通")
OPINION_COLUMNS: tuple[str, ...] = ("单位", "服务方式", "项目", "评价人", "测评得分", "评价意见")
UNCOUNTED_COLUMNS: tuple[str, ...] = ("单位", "服务方式", "测评编号", "项目", "评价人", "不计分原因")
_LATE_COLUMNS: tuple[str, ...] = ("单位", "服务方式", "测评编号", "项目", "整改期限", "整改日期")

SCORES_CSV = "scores.csv"
STAGES_CSV = "stages.csv"
BLOCKERS_CSV = "blockers.csv"
OPINIONS_CSV = "opinions.csv"
UNCOUNTED_CSV = "uncounted.csv"
INDEX_HTML = "index.html"

# the parts a score can be made of (AnnualReport.weights); the ledger's figures count only with a weight above 0
_WEIGHT_NAMES_ZH: dict[str, str] = {
    "questionnaire": "综合测评",
    "service_on_time": "首问响应按时率",
    "statutory_on_time": "承诺时限按时率",
    "rectification": "差评整改率",
}
_RATER_NAMES_ZH: dict[str, str] = {
    "enterprise": "服务对象（企业）",
    "recruiting_unit": "项目招引单位",
}
_RATER_SHORT_NAMES: dict[str, str] = {
    "enterprise": "服务对象",
    "recruiting_unit": "项目招引单位",
}
_EVALUATOR_SHORT_NAMES: dict[str, str] = {
    GOV_SERVICE_BUREAU: "政务服务局",
    ECON_DEV_BUREAU: "经济发展招商服务局",
}


# ---------------------------------------------------------------------------------------------------------------------
# shared formatting


def _one(value: float | None) -> str:
    """A number with one decimal, as every score and rate is shown; “—” for a part without data."""
    return "—" if value is None else f"{value:.1f}"


def _mark(value: float) -> str:
    """The pass mark or a weight without a useless trailing “.0”: 70 -> “70”, 72.5 -> “72.5”."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _percent(weight: float) -> str:
    return f"{_mark(weight * 100)}%"


def _verdict(score: ProviderScore) -> str:
    return score.status


def _evaluated(score: ProviderScore) -> bool:
    """Whether the provider has a score of the year: only these are drawn, counted and judged."""
    return score.status != UNEVALUATED and score.score is not None


def _mode_name(score: ProviderScore) -> str:
    return MODE_NAMES_ZH.get(score.mode, str(score.mode))


def _evaluator_name(score: ProviderScore) -> str:
    return _EVALUATOR_SHORT_NAMES.get(score.evaluator, score.evaluator)


def _rater_name(rater: str) -> str:
    return _RATER_SHORT_NAMES.get(rater, rater)


def _stage_name(stage: StageTimeliness) -> str:
    return stage.stage_name or STAGE_NAMES_ZH.get(stage.stage, str(stage.stage))


def title(report: AnnualReport) -> str:
    """The report's title, e.g. 2026 年度“企业零跑腿”服务综合评价报告（评价单位：和林格尔新区政务服务局）."""
    return f"{report.year} 年度“企业零跑腿”服务综合评价报告（评价单位：{report.evaluator_name}）"


def _score_row(score: ProviderScore) -> list[str]:
    return [
        score.provider_name,
        _mode_name(score),
        _evaluator_name(score),
        str(score.items),
        str(score.open_items),
        str(score.service_on_time),
        str(score.service_late),
        str(score.statutory_on_time),
        str(score.statutory_late),
        str(score.statutory_open_late),
        str(score.projects),
        f"{score.enterprise_response.asked}/{score.enterprise_response.answered}",
        f"{score.recruiting_response.asked}/{score.recruiting_response.answered}",
        _one(score.response_rate),
        str(score.assessments),
        _one(score.enterprise),
        _one(score.recruiting_unit),
        _one(score.questionnaire),
        _one(score.service_rate),
        _one(score.statutory_rate),
        _one(score.rectification_rate),
        str(score.bad),
        str(score.rectified),
        str(len(score.late_rectifications)),
        _one(score.score) if _evaluated(score) else "—",
        f"仅{score.single_group}" if score.single_group else "",
        _verdict(score),
    ]


def _stage_row(stage: StageTimeliness) -> list[str]:
    return [_stage_name(stage), str(stage.items), str(stage.on_time), _one(stage.rate)]


def _blocker_row(blocker: BlockerCause) -> list[str]:
    return [blocker.cause, str(blocker.count), str(blocker.open)]


def _opinion_rows(report: AnnualReport) -> list[list[str]]:
    return [
        [
            score.provider_name,
            _mode_name(score),
            opinion.project_code,
            _rater_name(opinion.rater),
            _one(opinion.total),
            opinion.comment,
        ]
        for score in report.scores
        for opinion in score.opinions
    ]


def _late_row(score: ProviderScore, late: LateRectification) -> list[str]:
    rectified = late.rectified_on.isoformat() if late.rectified_on is not None else NOT_RECTIFIED
    return [score.provider_name, _mode_name(score), late.assessment_id, late.project_code, late.rectify_by.isoformat(), rectified]


def _uncounted_rows(report: AnnualReport) -> list[list[str]]:
    return [[score.provider_name, _mode_name(score), u.assessment_id, u.project_code, u.rater, u.reason]
            for score in report.scores for u in score.uncounted]


def _exit_entry(score: ProviderScore) -> str:
    return f"{score.provider_name}（{_mode_name(score)}，{_one(score.score)} 分）"


def _unevaluated_entry(score: ProviderScore) -> str:
    return f"{score.provider_name}（{_mode_name(score)}）"


def _counts(report: AnnualReport) -> str:
    total = len(report.scores)
    passed = sum(1 for score in report.scores if score.status == "合格")
    failed = len(report.exit_list)
    unevaluated = len(report.unevaluated)
    return f"共 {total} 项，合格 {passed} 项，不合格 {failed} 项，未评价 {unevaluated} 项。"


# ---------------------------------------------------------------------------------------------------------------------
# display width (CJK characters take two terminal columns)


def display_width(text: str) -> int:
    """Terminal columns of ``text``: wide and full-width characters count 2, combining marks 0, others 1."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _pad(text: str, width: int, *, right: bool = False) -> str:
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def _truncate(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` display columns, ending with “…” when cut."""
    if display_width(text) <= width:
        return text
    out = ""
    for char in text:
        if display_width(out + char) > width - 1:
            break
        out += char
    return out + "…"


# ---------------------------------------------------------------------------------------------------------------------
# terminal table

_SUMMARY_COLUMNS: tuple[str, ...] = ("单位", "服务方式", "测评数", "回收率（%）", "总分", "结论")
_SUMMARY_RIGHT: frozenset[int] = frozenset({2, 3, 4})  # numeric columns are right-aligned


def _summary_row(score: ProviderScore) -> list[str]:
    total = _one(score.score) if _evaluated(score) else UNEVALUATED
    alone = f"（仅{score.single_group}测评）" if score.single_group else ""
    return [score.provider_name, _mode_name(score), str(score.assessments), _one(score.response_rate), total,
            _verdict(score) + alone]


def _as_of_text(report: AnnualReport) -> str:
    return f"时钟按 {report.as_of} 计算。" if report.as_of else ""


def _evaluator_ratings_text(report: AnnualReport) -> str:
    """Which rule applied to a rating by the mode's evaluator acting as 招引单位 (evaluation.yaml)."""
    if report.evaluator_ratings_count:
        return ("评价单位作为项目招引单位提交的测评计分（方案五(六)：由服务对象、项目招引单位测评；"
                "evaluation.yaml 中 evaluator_ratings_count: true）。被评价单位不能测评自己的服务。")
    return ("评价单位作为项目招引单位提交的测评不计分（evaluation.yaml 中 evaluator_ratings_count: false），"
            "列于“未计分的测评”。被评价单位不能测评自己的服务。")


def _task_orders_text(report: AnnualReport) -> str:
    t = report.task_orders
    assert t is not None
    return (f"专业跑腿任务单下发（经济发展招商服务局，时限 {t.limit_days} 个工作日，参考）：按时下发 {t.on_time} 项，"
            f"超时下发 {t.late} 项，超时未下发 {t.waiting_late} 项，时限内待下发 {t.waiting} 项；"
            f"按时下发率 {_one(t.rate)}%。")


def summary_table(report: AnnualReport) -> str:
    """A plain-text table of the scores for the terminal, aligned by display width.

    The second-to-last line is the exit list (退出/整改名单), the last one the providers without a score (未评价).
    """
    rows = [_summary_row(score) for score in report.scores]
    widths = [display_width(name) for name in _SUMMARY_COLUMNS]
    for row in rows:
        widths = [max(width, display_width(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = (_pad(cell, widths[i], right=i in _SUMMARY_RIGHT) for i, cell in enumerate(cells))
        return " | ".join(padded).rstrip()

    lines = [title(report)]
    lines.extend(f"注意：{warning}" for warning in report.calendar_warnings)
    lines += [line(_SUMMARY_COLUMNS), "-+-".join("-" * width for width in widths)]
    if rows:
        lines.extend(line(row) for row in rows)
    else:
        lines.append(f"（{NO_DATA}）")
    lines.append(f"合格线 {_mark(report.pass_mark)} 分；{_counts(report)}未评价不视为不合格。")
    lines.append(_as_of_text(report) + _evaluator_ratings_text(report))
    if report.task_orders is not None:
        lines.append(_task_orders_text(report))
    exits = report.exit_list
    lines.append("退出/整改名单：" + ("；".join(_exit_entry(score) for score in exits) if exits else "无"))
    unevaluated = report.unevaluated
    lines.append("未评价：" + ("；".join(_unevaluated_entry(score) for score in unevaluated) if unevaluated else "无"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# CSV


def _write_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    # utf-8-sig writes the BOM, so Excel opens the Chinese text correctly
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_csv(report: AnnualReport, directory: Path) -> list[Path]:
    """Write ``scores.csv``, ``stages.csv``, ``blockers.csv``, ``opinions.csv`` and ``uncounted.csv`` (UTF-8 with
    BOM) into ``directory``; return their paths. ``opinions.csv`` lists every 评价意见 of the year for the policy's
    revision (五(七)); ``uncounted.csv`` the 测评 kept but left out of the score, with the reason."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        _write_rows(directory / SCORES_CSV, SCORE_COLUMNS, (_score_row(score) for score in report.scores)),
        _write_rows(directory / STAGES_CSV, STAGE_COLUMNS, (_stage_row(stage) for stage in report.stages)),
        _write_rows(directory / BLOCKERS_CSV, BLOCKER_COLUMNS, (_blocker_row(blocker) for blocker in report.blockers)),
        _write_rows(directory / OPINIONS_CSV, OPINION_COLUMNS, _opinion_rows(report)),
        _write_rows(directory / UNCOUNTED_CSV, UNCOUNTED_COLUMNS, _uncounted_rows(report)),
    ]


# ---------------------------------------------------------------------------------------------------------------------
# HTML

_e = html.escape

_CSS = """
body { margin: 0; background: #f5f6f8; color: #1f2328;
  font-family: "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "Noto Sans CJK SC", "Source Han Sans SC",
  "WenQuanYi Micro Hei", sans-serif; font-size: 15px; line-height: 1.6; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 18px; margin: 32px 0 12px; padding-left: 10px; border-left: 4px solid #1f6fb2; }
.meta { color: #57606a; font-size: 13px; margin: 0 0 16px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 5px 8px; }
th { background: #eef2f6; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.fail td { background: #fff1f0; }
.pass { color: #1a7f37; font-weight: 600; }
.fail { color: #a40e26; font-weight: 600; }
.nodata { color: #57606a; background: #f6f8fa; border: 1px dashed #d0d7de; padding: 12px 16px; margin: 8px 0; }
.warning { background: #fff8e1; border: 1px solid #e0b000; border-left: 6px solid #e0b000; padding: 10px 16px; margin: 16px 0; }
.warning strong { color: #7a5900; }
.chart { overflow-x: auto; margin: 8px 0; }
.chart svg { max-width: 100%; height: auto; }
ul.exit { margin: 4px 0; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.scroll { overflow-x: auto; margin: 8px 0; }
table.wide th { white-space: normal; min-width: 3em; vertical-align: bottom; }
table.wide td:first-child { min-width: 10em; }
table.narrow { width: auto; min-width: 320px; }
td.comment { white-space: pre-wrap; word-break: break-word; }
tr.unevaluated td { color: #57606a; background: #f6f8fa; }
.unevaluated { color: #57606a; }
.chart-note { color: #57606a; font-size: 13px; margin: 4px 0 8px; }
table.summary { width: auto; min-width: 640px; }
nav.links { max-width: 1080px; margin: 0 auto; padding: 10px 32px; background: #1f3b57; font-size: 14px; }
nav.links a { color: #fff; margin-right: 20px; }
@media print {
  @page { size: A4 landscape; margin: 12mm; }
  body { background: #fff; font-size: 11pt; }
  nav.links { display: none; }
  main { max-width: none; padding: 0; }
  .scroll, .chart { overflow: visible; }
  table.wide { font-size: 7.5pt; }
  table.wide th, table.wide td { padding: 2px 3px; }
  h2 { break-after: avoid; }
  tr, li { break-inside: avoid; }
}
"""

_SVG_FONT = 'font-family="PingFang SC, Microsoft YaHei, Noto Sans CJK SC, sans-serif"'
_CHAR_PX = 7.0  # pixels per display column at font-size 13
_ROW_H = 28
_BAR_H = 16
_PLOT_W = 560


def _label_px(labels: Sequence[str]) -> int:
    widest = max((display_width(label) for label in labels), default=8)
    return int(max(8, widest) * _CHAR_PX) + 16


def _no_data(what: str) -> str:
    return f'<p class="nodata">{_e(what)}：{NO_DATA}</p>'


def _svg_open(width: float, height: float, label: str) -> str:
    return (
        f'<svg width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{_e(label)}" {_SVG_FONT} font-size="13">'
        f"<title>{_e(label)}</title>"
    )


def _axis(x0: float, plot_w: float, y_top: float, y_bottom: float, ticks: Sequence[float], labels: Sequence[str]) -> list[str]:
    """Vertical grid lines and tick labels under the plot; ``ticks`` are fractions 0..1 of the plot width."""
    parts = [f'<line x1="{x0:.1f}" y1="{y_top:.1f}" x2="{x0:.1f}" y2="{y_bottom:.1f}" stroke="#8c959f"/>']
    for tick, label in zip(ticks, labels, strict=True):
        x = x0 + tick * plot_w
        if tick > 0:
            parts.append(f'<line x1="{x:.1f}" y1="{y_top:.1f}" x2="{x:.1f}" y2="{y_bottom:.1f}" stroke="#eaeef2"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{y_bottom + 16:.1f}" text-anchor="middle" fill="#57606a" font-size="11">{_e(label)}</text>'
        )
    return parts


def _unevaluated_note(report: AnnualReport) -> str:
    """The providers left out of the score chart, in grey: they have no 测评, which is not a fail."""
    left_out = [score for score in report.scores if not _evaluated(score)]
    if not left_out:
        return ""
    names = "、".join(_e(_unevaluated_entry(score)) for score in left_out)
    return (
        f'<p class="chart-note" style="color: {UNEVALUATED_FILL}">'
        f"未评价（{UNEVALUATED_REASON}，不画入图中，不视为不合格）：{names}</p>"
    )


def _score_chart(report: AnnualReport) -> str:
    name = "各服务单位得分与合格线"
    drawn = [score for score in report.scores if _evaluated(score)]
    if not drawn:
        return _no_data(name) + _unevaluated_note(report)
    labels = [f"{score.provider_name}（{_mode_name(score)}）" for score in drawn]
    x0 = _label_px(labels)
    top, bottom_pad = 30, 28
    plot_h = _ROW_H * len(drawn)
    width, height = x0 + _PLOT_W + 70, top + plot_h + bottom_pad
    parts = [_svg_open(width, height, name)]
    parts += _axis(x0, _PLOT_W, top - 4, top + plot_h, [i / 5 for i in range(6)], [str(i * 20) for i in range(6)])
    for row, (score, label) in enumerate(zip(drawn, labels, strict=True)):
        value = score.score if score.score is not None else 0.0
        y = top + row * _ROW_H + (_ROW_H - _BAR_H) / 2
        bar = max(0.0, min(100.0, value)) / 100 * _PLOT_W
        fill = FAIL_FILL if score.status == "不合格" else PASS_FILL
        verdict = _e(_verdict(score))
        parts.append(
            f'<text x="{x0 - 8}" y="{y + _BAR_H - 3:.1f}" text-anchor="end" fill="#1f2328">{_e(label)}</text>'
            f'<rect x="{x0}" y="{y:.1f}" width="{bar:.1f}" height="{_BAR_H}" fill="{fill}" rx="2">'
            f"<title>{_e(label)}：{_one(value)} 分，{verdict}</title></rect>"
            f'<text x="{x0 + bar + 6:.1f}" y="{y + _BAR_H - 3:.1f}" fill="#1f2328" font-weight="600">{_one(value)}</text>'
        )
    mark_x = x0 + max(0.0, min(100.0, report.pass_mark)) / 100 * _PLOT_W
    parts.append(
        f'<line x1="{mark_x:.1f}" y1="{top - 8}" x2="{mark_x:.1f}" y2="{top + plot_h + 2}" stroke="#6e2c00" '
        f'stroke-width="1.5" stroke-dasharray="6 4"/>'
        f'<text x="{mark_x:.1f}" y="{top - 12}" text-anchor="middle" fill="#6e2c00" font-weight="600">'
        f"合格线 {_e(_mark(report.pass_mark))}</text>"
    )
    parts.append("</svg>")
    return f'<div class="chart">{"".join(parts)}</div>{_unevaluated_note(report)}'


def _stage_chart(report: AnnualReport) -> str:
    name = "各审批阶段按时办结率"
    if not report.stages:
        return _no_data(name)
    labels = [_stage_name(stage) for stage in report.stages]
    x0 = _label_px(labels)
    top, bottom_pad = 12, 28
    plot_h = _ROW_H * len(report.stages)
    width, height = x0 + _PLOT_W + 150, top + plot_h + bottom_pad
    parts = [_svg_open(width, height, name)]
    parts += _axis(x0, _PLOT_W, top - 4, top + plot_h, [i / 5 for i in range(6)], [f"{i * 20}%" for i in range(6)])
    for row, (stage, label) in enumerate(zip(report.stages, labels, strict=True)):
        y = top + row * _ROW_H + (_ROW_H - _BAR_H) / 2
        bar = max(0.0, min(100.0, stage.rate)) / 100 * _PLOT_W
        value = f"{_one(stage.rate)}%（{stage.on_time}/{stage.items}）" if stage.items else "无办结事项"
        parts.append(
            f'<text x="{x0 - 8}" y="{y + _BAR_H - 3:.1f}" text-anchor="end" fill="#1f2328">{_e(label)}</text>'
            f'<rect x="{x0}" y="{y:.1f}" width="{bar:.1f}" height="{_BAR_H}" fill="{STAGE_FILL}" rx="2">'
            f"<title>{_e(label)}：{_e(value)}</title></rect>"
            f'<text x="{x0 + bar + 6:.1f}" y="{y + _BAR_H - 3:.1f}" fill="#1f2328">{_e(value)}</text>'
        )
    parts.append("</svg>")
    return f'<div class="chart">{"".join(parts)}</div>'


def _count_ticks(largest: int) -> list[int]:
    step = max(1, math.ceil(largest / 5))
    return list(range(0, step * math.ceil(max(1, largest) / step) + 1, step))


def _blocker_chart(report: AnnualReport) -> str:
    name = "堵点/卡点成因"
    if not report.blockers:
        return _no_data(name)
    labels = [_truncate(blocker.cause, 36) for blocker in report.blockers]
    x0 = _label_px(labels)
    top, bottom_pad = 30, 28
    plot_h = _ROW_H * len(report.blockers)
    width, height = x0 + _PLOT_W + 170, top + plot_h + bottom_pad
    ticks = _count_ticks(max(blocker.count for blocker in report.blockers))
    scale = ticks[-1]
    parts = [_svg_open(width, height, name)]
    parts.append(
        f'<rect x="{x0}" y="6" width="12" height="12" fill="{BLOCKER_FILL}"/>'
        f'<text x="{x0 + 18}" y="16" fill="#1f2328">已疏通</text>'
        f'<rect x="{x0 + 80}" y="6" width="12" height="12" fill="{BLOCKER_OPEN_FILL}"/>'
        f'<text x="{x0 + 98}" y="16" fill="#1f2328">未疏通</text>'
    )
    parts += _axis(x0, _PLOT_W, top - 4, top + plot_h, [tick / scale for tick in ticks], [str(tick) for tick in ticks])
    for row, (blocker, label) in enumerate(zip(report.blockers, labels, strict=True)):
        y = top + row * _ROW_H + (_ROW_H - _BAR_H) / 2
        bar = max(0, blocker.count) / scale * _PLOT_W
        open_bar = max(0, min(blocker.open, blocker.count)) / scale * _PLOT_W
        value = f"共 {blocker.count} 次，未疏通 {blocker.open} 次"
        parts.append(
            f'<text x="{x0 - 8}" y="{y + _BAR_H - 3:.1f}" text-anchor="end" fill="#1f2328">'
            f"<title>{_e(blocker.cause)}</title>{_e(label)}</text>"
            f'<rect x="{x0}" y="{y:.1f}" width="{bar:.1f}" height="{_BAR_H}" fill="{BLOCKER_FILL}" rx="2">'
            f"<title>{_e(blocker.cause)}：{_e(value)}</title></rect>"
            f'<rect x="{x0}" y="{y:.1f}" width="{open_bar:.1f}" height="{_BAR_H}" fill="{BLOCKER_OPEN_FILL}" rx="2">'
            f"<title>{_e(blocker.cause)}：未疏通 {blocker.open} 次</title></rect>"
            f'<text x="{x0 + bar + 6:.1f}" y="{y + _BAR_H - 3:.1f}" fill="#1f2328">{_e(value)}</text>'
        )
    parts.append("</svg>")
    return f'<div class="chart">{"".join(parts)}</div>'


def _weights_text(report: AnnualReport) -> str:
    """Which parts count: “综合测评 100%；首问响应按时率 仅供参考，不计分；…”."""
    keys = list(_WEIGHT_NAMES_ZH) + [key for key in report.weights if key not in _WEIGHT_NAMES_ZH]
    parts = []
    for key in keys:
        weight = report.weights.get(key, 0.0)
        shown = _percent(weight) if weight > 0 else "仅供参考，不计分"
        parts.append(f"{_e(_WEIGHT_NAMES_ZH.get(key, key))} {_e(shown)}")
    return "；".join(parts)


def _questionnaire_table(report: AnnualReport) -> str:
    if not report.questionnaire:
        return _no_data("测评问卷指标")
    rows = "".join(
        f'<tr><td>{_e(name)}</td><td class="num">{_e(_mark(points))}</td></tr>' for name, points in report.questionnaire
    )
    total = sum(points for _, points in report.questionnaire)
    return (
        '<table class="narrow"><thead><tr><th>测评指标</th><th>分值</th></tr></thead>'
        f'<tbody>{rows}<tr><td><strong>合计</strong></td><td class="num"><strong>{_e(_mark(total))}</strong></td></tr>'
        "</tbody></table>"
    )


def _explanation(report: AnnualReport) -> str:
    mark = _e(_mark(report.pass_mark))
    raters = "、".join(
        f"{_e(_RATER_NAMES_ZH.get(key, key))} {_e(_percent(weight))}" for key, weight in report.rater_weights.items()
    )
    by_evaluator: dict[str, list[str]] = {}
    for mode, evaluator in EVALUATOR_BY_MODE.items():
        by_evaluator.setdefault(evaluator, []).append(MODE_NAMES_ZH[mode])
    split = "；".join(
        f"{_e(_EVALUATOR_SHORT_NAMES.get(evaluator, evaluator))}负责评价{_e('、'.join(modes))}服务"
        for evaluator, modes in by_evaluator.items()
    )
    scope = (
        f"本报告为{_e(report.evaluator_name)}的评价结果。"
        if report.evaluator is not None
        else "本报告汇总全部评价单位的评价结果。"
    )
    return (
        '<section id="explanation"><h2>评价说明</h2><ul>'
        f"<li>按年度对审批服务单位进行综合评价，满分 100 分，<strong>{mark} 分及以上为合格</strong>；"
        f"经测评低于 {mark} 分的服务单位列入退出/整改名单。</li>"
        f"<li>评价分工（工作方案五(六)）：{split}；咨询服务按其对应的服务方式计入评价。{scope}</li>"
        "<li>综合测评：评价单位组织服务对象（企业）和项目招引单位按下表测评问卷逐项打分；"
        f"两类测评人的测评总分分别取平均，再按测评人权重（{raters or NO_DATA}）合计为综合测评得分。</li>"
        f"<li>计分权重：{_weights_text(report) if report.weights else NO_DATA}。"
        "台账数据（首问响应按时率、承诺时限按时率、差评整改率）标“仅供参考，不计分”的，只列出供参考，不影响总分。</li>"
        f"<li><strong>未评价不是不合格</strong>：本年度没有任何综合测评的服务单位不计分，结论为“未评价”，"
        "不画入得分图，不列入退出/整改名单，另列于“未评价单位”。</li>"
        f"<li>测评人：{_e(_evaluator_ratings_text(report))}"
        "服务项目数：本年度该单位已开始服务的项目数，每个项目的服务对象和招引单位各应评一次"
        "（招引单位就是被评价单位的不应评；评价单位作为招引单位的测评不计分时亦不应评）；"
        "测评回收率 = 已评 ÷ 应评；早于该单位为项目提供服务的测评不计分。"
        "只有一类测评人测评的，得分由该类测评人单独决定，在“单一类别测评”中标出。</li>"
        "<li>首问响应按时率：在时限内首次联系企业的事项占比（服务时钟）；"
        "承诺时限按时率：自受理起在事项清单的承诺时限（不长于法定时限）内办结的事项占比（超时办结和超时未办结都算超时）；"
        "差评整改率 = 在整改期限内完成整改的差评 ÷ 本年度全部差评（尚未整改的算未整改）；"
        "逾期整改：超过整改期限才整改或仍未整改的差评。"
        f"{_e(_as_of_text(report))}黄牌：超过时限；红牌：超过时限且已用时长达到配置的倍数。</li>"
        f"</ul><h3>测评问卷</h3>{_questionnaire_table(report)}</section>"
    )


def _row_class(score: ProviderScore) -> str:
    if not _evaluated(score):
        return "unevaluated"
    return "pass" if score.status == "合格" else "fail"


def _summary_section(report: AnnualReport) -> str:
    """总分 and 结论 of every provider first, in a table narrow enough for any screen (the full table of
    27 columns follows under 服务单位得分)."""
    if not report.scores:
        return f'<section id="summary"><h2>总分与结论</h2>{_no_data("服务单位得分")}</section>'
    head = "".join(f"<th>{_e(column)}</th>" for column in _SUMMARY_COLUMNS)
    body = []
    for score in report.scores:
        cells = _summary_row(score)
        kind = _row_class(score)
        tds = [f"<td>{_e(cell)}</td>" for cell in cells[:2]]
        tds += [f'<td class="num">{_e(cell)}</td>' for cell in cells[2:-1]]
        tds.append(f'<td class="{kind}">{_e(cells[-1])}</td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    return (f'<section id="summary"><h2>总分与结论</h2><table class="summary"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table><p class="meta">合格线 {_e(_mark(report.pass_mark))} 分；'
            f"{_e(_counts(report))}各项得分见下文“服务单位得分”。</p></section>")


def _score_table(report: AnnualReport) -> str:
    if not report.scores:
        return _no_data("服务单位得分")
    head = "".join(f"<th>{_e(column)}</th>" for column in SCORE_COLUMNS)
    body = []
    for score in report.scores:
        cells = _score_row(score)
        tds = [f"<td>{_e(cell)}</td>" for cell in cells[:3]]
        tds += [f'<td class="num">{_e(cell)}</td>' for cell in cells[3:-1]]
        kind = _row_class(score)
        tds.append(f'<td class="{kind}">{_e(cells[-1])}</td>')
        row_class = f' class="{kind}"' if kind != "pass" else ""
        body.append(f"<tr{row_class}>{''.join(tds)}</tr>")
    return (
        f'<div class="scroll"><table class="wide"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
        f'<p class="meta">{_e(_counts(report))}“总分”为“—”的服务单位未评价，不视为不合格。</p>'
    )


def _exit_section(report: AnnualReport) -> str:
    exits = report.exit_list
    if not exits:
        content = "<p>无</p>"
    else:
        items = []
        for score in exits:
            value = score.score if score.score is not None else 0.0
            items.append(
                f"<li><strong>{_e(score.provider_name)}</strong>（{_e(_mode_name(score))}，{_one(value)} 分，"
                f"低于合格线 {_one(report.pass_mark - value)} 分）</li>"
            )
        content = f'<ul class="exit">{"".join(items)}</ul>'
    return f'<section id="exit-list"><h2>退出/整改名单</h2>{content}</section>'


def _unevaluated_section(report: AnnualReport) -> str:
    unevaluated = report.unevaluated
    if not unevaluated:
        content = "<p>无</p>"
    else:
        items = "".join(
            f"<li><strong>{_e(score.provider_name)}</strong>（{_e(_mode_name(score))}，"
            f"评价单位：{_e(_evaluator_name(score))}，事项 {score.items} 项）：{UNEVALUATED_REASON}</li>"
            for score in unevaluated
        )
        content = (
            f'<ul class="unevaluated">{items}</ul>'
            '<p class="meta">未评价的服务单位本年度不计分，不视为不合格，不列入退出/整改名单。</p>'
        )
    return f'<section id="unevaluated"><h2>未评价单位</h2>{content}</section>'


def _simple_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: frozenset[int] = frozenset(), comment: int | None = None
) -> str:
    head = "".join(f"<th>{_e(column)}</th>" for column in header)
    body = []
    for row in rows:
        tds = []
        for i, cell in enumerate(row):
            css = ' class="num"' if i in numeric else ' class="comment"' if i == comment else ""
            tds.append(f"<td{css}>{_e(cell)}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _late_section(report: AnnualReport) -> str:
    rows = [_late_row(score, late) for score in report.scores for late in score.late_rectifications]
    content = _simple_table(_LATE_COLUMNS, rows) if rows else "<p>无</p>"
    return f'<section id="late-rectifications"><h2>逾期整改</h2>{content}</section>'


def _uncounted_section(report: AnnualReport) -> str:
    rows = _uncounted_rows(report)
    content = _simple_table(UNCOUNTED_COLUMNS, rows) if rows else "<p>无</p>"
    return f'<section id="uncounted"><h2>未计分的测评</h2>{content}</section>'


def _task_orders_section(report: AnnualReport) -> str:
    if report.task_orders is None:
        return ""
    return (f'<section id="task-orders"><h2>专业跑腿任务单下发（参考）</h2><p>{_e(_task_orders_text(report))}</p>'
            '<p class="meta">任务单由经济发展招商服务局在事项具备办理条件后下发（工作方案四(三)）；'
            "政联公司的首问响应时钟自任务单下发起算，下发前的等待不计入其时限。</p></section>")


def _opinions_section(report: AnnualReport) -> str:
    parts = ['<p class="meta">综合测评中服务对象和项目招引单位填写的评价意见，供年度修订评价办法（工作方案五(七)）参考。</p>']
    if not report.scores:
        parts.append("<p>无</p>")
    for score in report.scores:
        parts.append(f"<h3>{_e(score.provider_name)}（{_e(_mode_name(score))}）</h3>")
        if not score.opinions:
            parts.append('<p class="unevaluated">无评价意见</p>')
            continue
        rows = [
            [opinion.project_code, _rater_name(opinion.rater), _one(opinion.total), opinion.comment or "（未填写）"]
            for opinion in score.opinions
        ]
        parts.append(_simple_table(OPINION_COLUMNS[2:], rows, numeric=frozenset({2}), comment=3))
    return f'<section id="opinions"><h2>评价意见</h2>{"".join(parts)}</section>'


def _warnings(report: AnnualReport) -> str:
    if not report.calendar_warnings:
        return ""
    items = "".join(f"<li>{_e(warning)}</li>" for warning in report.calendar_warnings)
    return f'<div class="warning" role="note"><strong>注意：</strong><ul>{items}</ul></div>'


def render_html(report: AnnualReport, links: str = "") -> str:
    """The report as one self-contained HTML page (inline CSS and SVG; no scripts, external fonts or links).
    ``links``: trusted HTML of links put above the report (the console's way back and its download), left
    out when printed; none in the file ``zeroerrand report`` writes."""
    page_title = _e(title(report))
    generated = _e(report.generated_at.astimezone(LOCAL).strftime("%Y-%m-%d %H:%M（北京时间）"))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{page_title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + (f'<nav class="links">{links}</nav>\n' if links else "")
        + "<main>\n"
        f"<h1>{page_title}</h1>\n"
        f'<p class="meta">评价年度：{report.year} 年　生成时间：{generated}</p>\n'
        f"{_warnings(report)}\n"
        f"{_summary_section(report)}\n"
        f"{_explanation(report)}\n"
        f"<h2>服务单位得分</h2>\n{_score_table(report)}\n"
        f"<h2>各服务单位得分与合格线</h2>\n{_score_chart(report)}\n"
        f"{_exit_section(report)}\n"
        f"{_unevaluated_section(report)}\n"
        f"{_late_section(report)}\n"
        f"{_uncounted_section(report)}\n"
        f"{_task_orders_section(report)}\n"
        f"<h2>各审批阶段按时办结率</h2>\n{_stage_chart(report)}\n"
        f"<h2>堵点/卡点成因</h2>\n{_blocker_chart(report)}\n"
        f"{_opinions_section(report)}\n"
        "</main>\n</body>\n</html>\n"
    )


def report_tables(report: AnnualReport) -> list[tuple[str, Sequence[str], list[list[str]]]]:
    """The report's tables as ``write_csv`` writes them: (name, header, rows) each."""
    return [
        ("服务单位得分", SCORE_COLUMNS, [_score_row(score) for score in report.scores]),
        ("审批阶段按时办结", STAGE_COLUMNS, [_stage_row(stage) for stage in report.stages]),
        ("堵点卡点成因", BLOCKER_COLUMNS, [_blocker_row(blocker) for blocker in report.blockers]),
        ("评价意见", OPINION_COLUMNS, _opinion_rows(report)),
        ("未计分的测评", UNCOUNTED_COLUMNS, _uncounted_rows(report)),
    ]


def write_report(report: AnnualReport, directory: Path) -> list[Path]:
    """Write ``index.html`` and the five CSV files into ``directory`` (created if missing); return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    index = directory / INDEX_HTML
    index.write_text(render_html(report), encoding="utf-8")
    return [index, *write_csv(report, directory)]
