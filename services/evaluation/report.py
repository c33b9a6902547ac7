"""Rendering the annual comprehensive evaluation (年度综合评价) for people: an HTML page, CSV files, a terminal table.

Pure: no network, no external scripts, fonts or style sheets. Every text a person reads is in Chinese, and every
text that comes from the data is escaped with :func:`html.escape` before it goes into the page.
"""

from __future__ import annotations

import csv
import html
import math
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from services.common.domain import ECON_DEV_BUREAU, EVALUATOR_BY_MODE, GOV_SERVICE_BUREAU, MODE_NAMES_ZH, STAGE_NAMES_ZH
from services.evaluation.annual import AnnualReport, BlockerCause, ProviderScore, StageTimeliness

__all__ = [
    "BLOCKER_COLUMNS",
    "FAIL_FILL",
    "PASS_FILL",
    "SCORE_COLUMNS",
    "STAGE_COLUMNS",
    "render_html",
    "summary_table",
    "write_csv",
    "write_report",
]

# Colours of the score chart. FAIL_FILL is used for nothing but the bars of providers below the pass mark.
FAIL_FILL = "#d93025"
PASS_FILL = "#2e7d32"
STAGE_FILL = "#1f6fb2"
BLOCKER_FILL = "#f4b183"
BLOCKER_OPEN_FILL = "#c55a11"

NO_DATA = "无数据"

SCORE_COLUMNS: tuple[str, ...] = (
    "单位",
    "服务方式",
    "事项数",
    "按时办结",
    "超时",
    "评价数",
    "差评",
    "已整改",
    "满意度",
    "及时性",
    "差评整改",
    "总分",
    "结论",
)
STAGE_COLUMNS: tuple[str, ...] = ("审批阶段", "办结事项数", "按时办结", "按时办结率（%）")
BLOCKER_COLUMNS: tuple[str, ...] = ("堵点/卡点成因", "次数", "未疏通")

SCORES_CSV = "scores.csv"
STAGES_CSV = "stages.csv"
BLOCKERS_CSV = "blockers.csv"
INDEX_HTML = "index.html"

_WEIGHT_NAMES_ZH: dict[str, str] = {
    "satisfaction": "满意度（企业评价）",
    "timeliness": "及时性（按时办结率）",
    "rectification": "差评整改（差评整改完成率）",
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


def _verdict(score: ProviderScore) -> str:
    return "合格" if score.passed else "不合格"


def _mode_name(score: ProviderScore) -> str:
    return MODE_NAMES_ZH.get(score.mode, str(score.mode))


def _stage_name(stage: StageTimeliness) -> str:
    return stage.stage_name or STAGE_NAMES_ZH.get(stage.stage, str(stage.stage))


def title(report: AnnualReport) -> str:
    """The report's title, e.g. 2026 年度“企业零跑腿”服务综合评价报告（评价单位：和林格尔新区政务服务局）."""
    return f"{report.year} 年度“企业零跑腿”服务综合评价报告（评价单位：{report.evaluator_name}）"


def _score_row(score: ProviderScore) -> list[str]:
    return [
        score.provider_name,
        _mode_name(score),
        str(score.items),
        str(score.on_time),
        str(score.late),
        str(score.ratings),
        str(score.bad_ratings),
        str(score.rectified),
        _one(score.satisfaction),
        _one(score.timeliness),
        _one(score.rectification),
        _one(score.score),
        _verdict(score),
    ]


def _stage_row(stage: StageTimeliness) -> list[str]:
    return [_stage_name(stage), str(stage.items), str(stage.on_time), _one(stage.rate)]


def _blocker_row(blocker: BlockerCause) -> list[str]:
    return [blocker.cause, str(blocker.count), str(blocker.open)]


def _exit_entry(score: ProviderScore) -> str:
    return f"{score.provider_name}（{_mode_name(score)}，{_one(score.score)} 分）"


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

_SUMMARY_COLUMNS: tuple[str, ...] = (
    "单位",
    "服务方式",
    "事项数",
    "按时办结",
    "超时",
    "差评",
    "已整改",
    "满意度",
    "及时性",
    "差评整改",
    "总分",
    "结论",
)
_SUMMARY_RIGHT: frozenset[int] = frozenset(range(2, 11))  # numeric columns are right-aligned


def _summary_row(score: ProviderScore) -> list[str]:
    full = _score_row(score)
    # the terminal leaves out 评价数 (index 5) to stay narrow
    return full[:5] + full[6:]


def summary_table(report: AnnualReport) -> str:
    """A plain-text table of the scores for the terminal, aligned by display width, ending with the exit list line."""
    rows = [_summary_row(score) for score in report.scores]
    widths = [display_width(name) for name in _SUMMARY_COLUMNS]
    for row in rows:
        widths = [max(width, display_width(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = (_pad(cell, widths[i], right=i in _SUMMARY_RIGHT) for i, cell in enumerate(cells))
        return " | ".join(padded).rstrip()

    lines = [title(report), line(_SUMMARY_COLUMNS), "-+-".join("-" * width for width in widths)]
    if rows:
        lines.extend(line(row) for row in rows)
    else:
        lines.append(f"（{NO_DATA}）")
    passed = sum(1 for score in report.scores if score.passed)
    lines.append(f"合格线 {_mark(report.pass_mark)} 分；共 {len(rows)} 项，合格 {passed} 项，不合格 {len(rows) - passed} 项。")
    exits = report.exit_list
    lines.append("退出/整改名单：" + ("；".join(_exit_entry(score) for score in exits) if exits else "无"))
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
    """Write ``scores.csv``, ``stages.csv`` and ``blockers.csv`` (UTF-8 with BOM) into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        _write_rows(directory / SCORES_CSV, SCORE_COLUMNS, (_score_row(score) for score in report.scores)),
        _write_rows(directory / STAGES_CSV, STAGE_COLUMNS, (_stage_row(stage) for stage in report.stages)),
        _write_rows(directory / BLOCKERS_CSV, BLOCKER_COLUMNS, (_blocker_row(blocker) for blocker in report.blockers)),
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


def _score_chart(report: AnnualReport) -> str:
    name = "各服务单位得分与合格线"
    if not report.scores:
        return _no_data(name)
    labels = [f"{score.provider_name}（{_mode_name(score)}）" for score in report.scores]
    x0 = _label_px(labels)
    top, bottom_pad = 30, 28
    plot_h = _ROW_H * len(report.scores)
    width, height = x0 + _PLOT_W + 70, top + plot_h + bottom_pad
    parts = [_svg_open(width, height, name)]
    parts += _axis(x0, _PLOT_W, top - 4, top + plot_h, [i / 5 for i in range(6)], [str(i * 20) for i in range(6)])
    for row, (score, label) in enumerate(zip(report.scores, labels, strict=True)):
        y = top + row * _ROW_H + (_ROW_H - _BAR_H) / 2
        bar = max(0.0, min(100.0, score.score)) / 100 * _PLOT_W
        fill = PASS_FILL if score.passed else FAIL_FILL
        verdict = _verdict(score)
        parts.append(
            f'<text x="{x0 - 8}" y="{y + _BAR_H - 3:.1f}" text-anchor="end" fill="#1f2328">{_e(label)}</text>'
            f'<rect x="{x0}" y="{y:.1f}" width="{bar:.1f}" height="{_BAR_H}" fill="{fill}" rx="2">'
            f"<title>{_e(label)}：{_one(score.score)} 分，{verdict}</title></rect>"
            f'<text x="{x0 + bar + 6:.1f}" y="{y + _BAR_H - 3:.1f}" fill="#1f2328" font-weight="600">{_one(score.score)}</text>'
        )
    mark_x = x0 + max(0.0, min(100.0, report.pass_mark)) / 100 * _PLOT_W
    parts.append(
        f'<line x1="{mark_x:.1f}" y1="{top - 8}" x2="{mark_x:.1f}" y2="{top + plot_h + 2}" stroke="#6e2c00" '
        f'stroke-width="1.5" stroke-dasharray="6 4"/>'
        f'<text x="{mark_x:.1f}" y="{top - 12}" text-anchor="middle" fill="#6e2c00" font-weight="600">'
        f"合格线 {_e(_mark(report.pass_mark))}</text>"
    )
    parts.append("</svg>")
    return f'<div class="chart">{"".join(parts)}</div>'


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


def _explanation(report: AnnualReport) -> str:
    mark = _e(_mark(report.pass_mark))
    weights = "、".join(
        f"{_e(_WEIGHT_NAMES_ZH.get(key, key))} {_e(_mark(weight * 100))}%" for key, weight in report.weights.items()
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
        "<h2>评价说明</h2><ul>"
        f"<li>按年度对审批服务单位进行综合评价，满分 100 分，{mark} 分及以上为合格；"
        f"低于 {mark} 分的服务单位列入退出/整改名单。</li>"
        f"<li>评分权重：{weights or NO_DATA}。</li>"
        f"<li>评价分工（工作方案五(六)）：{split}；咨询服务按其对应的服务方式计入评价。{scope}</li>"
        "<li>“超时”含超过办理时限办结及超过时限仍未办结的事项；“差评”指“不满意”或“非常不满意”的评价；"
        "“已整改”指服务单位已提交整改说明并办结的差评。</li>"
        "</ul>"
    )


def _score_table(report: AnnualReport) -> str:
    if not report.scores:
        return _no_data("服务单位得分")
    head = "".join(f"<th>{_e(column)}</th>" for column in SCORE_COLUMNS)
    body = []
    for score in report.scores:
        cells = _score_row(score)
        tds = [f"<td>{_e(cells[0])}</td>", f"<td>{_e(cells[1])}</td>"]
        tds += [f'<td class="num">{_e(cell)}</td>' for cell in cells[2:-1]]
        verdict_class = "pass" if score.passed else "fail"
        tds.append(f'<td class="{verdict_class}">{_e(cells[-1])}</td>')
        row_class = "" if score.passed else ' class="fail"'
        body.append(f"<tr{row_class}>{''.join(tds)}</tr>")
    passed = sum(1 for score in report.scores if score.passed)
    total = len(report.scores)
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f'<p class="meta">共 {total} 项，合格 {passed} 项，不合格 {total - passed} 项。</p>'
    )


def _exit_section(report: AnnualReport) -> str:
    exits = report.exit_list
    if not exits:
        content = "<p>无</p>"
    else:
        items = "".join(
            f"<li><strong>{_e(score.provider_name)}</strong>（{_e(_mode_name(score))}，{_one(score.score)} 分，"
            f"低于合格线 {_one(report.pass_mark - score.score)} 分）</li>"
            for score in exits
        )
        content = f'<ul class="exit">{items}</ul>'
    return f'<section id="exit-list"><h2>退出/整改名单</h2>{content}</section>'


def _warnings(report: AnnualReport) -> str:
    if not report.calendar_warnings:
        return ""
    items = "".join(f"<li>{_e(warning)}</li>" for warning in report.calendar_warnings)
    return f'<div class="warning" role="note"><strong>注意：</strong><ul>{items}</ul></div>'


def render_html(report: AnnualReport) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG; no scripts, external fonts or links)."""
    page_title = _e(title(report))
    generated = _e(report.generated_at.strftime("%Y-%m-%d %H:%M"))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{page_title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{page_title}</h1>\n"
        f'<p class="meta">评价年度：{report.year} 年　生成时间：{generated}</p>\n'
        f"{_warnings(report)}\n"
        f"{_explanation(report)}\n"
        f"<h2>服务单位得分</h2>\n{_score_table(report)}\n"
        f"<h2>各服务单位得分与合格线</h2>\n{_score_chart(report)}\n"
        f"{_exit_section(report)}\n"
        f"<h2>各审批阶段按时办结率</h2>\n{_stage_chart(report)}\n"
        f"<h2>堵点/卡点成因</h2>\n{_blocker_chart(report)}\n"
        "</main>\n</body>\n</html>\n"
    )


def write_report(report: AnnualReport, directory: Path) -> list[Path]:
    """Write ``index.html`` and the CSV files into ``directory`` (created if missing); return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    index = directory / INDEX_HTML
    index.write_text(render_html(report), encoding="utf-8")
    return [index, *write_csv(report, directory)]
