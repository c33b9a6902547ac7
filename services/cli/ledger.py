"""``ledger show`` / ``ledger requests`` and ``sweep``: the ledger as the evaluation service keeps it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.cli._common import Project, book, day, dump, fail, fail_problems, on_ledger

if TYPE_CHECKING:
    from services.evaluation.views import ItemRow

ledger_app = typer.Typer(help="年度综合评价台账 / the ledger.", no_args_is_help=True)


@ledger_app.command("show")
def ledger_show(project: Project,
                today: Annotated[str | None, typer.Option(help="按哪一天计算已用工作日（默认今天）")] = None,
                as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False) -> None:
    """项目台账：每个事项的阶段、服务方式、承办单位、状态、等待的前置事项、时钟（首问响应、承诺时限，专业跑腿另有任务单下发）、
    任务单、堵点及须由谁解决、超时预警。"""
    from datetime import UTC, datetime

    from services.common.settings import EvaluationSettings
    from services.common.yaml_files import RulesError
    from services.evaluation.holiday_file import load_calendar
    from services.evaluation.ledger import local_day
    from services.evaluation.scoring import load_config
    from services.evaluation.views import ViewContext, progress_document, project_progress

    on = day(today) if today else local_day(datetime.now(UTC))
    try:
        calendar = load_calendar(EvaluationSettings().rules_dir)
        config = load_config(EvaluationSettings().rules_dir)
    except RulesError as exc:
        fail_problems("规则文件", exc)
    units = book(None).units
    ctx = ViewContext(unit_names={code: unit.short_name for code, unit in units.items()}, calendar=calendar,
                      service_response_days=config.service_response_days, today=on, cards=config.cards,
                      task_order_days=config.task_order_issue_days)
    progress = asyncio.run(on_ledger(lambda repo: project_progress(repo, ctx, project)))
    if progress is None:
        fail(f"台账中没有项目 {project}")
    if as_json:
        typer.echo(dump(progress_document(progress)))
        return
    head = progress.project
    delivered_text = "已全部移交" if head.delivered_at else "办理中"
    typer.echo(f"项目 {project}（{head.name}）服务对象：{head.enterprise}；签约 {head.signed_on}；{delivered_text}")
    catalog = book(None).catalog
    law = {code: item.statutory_limit.text() if item.statutory_limit else "法律法规未规定办理时限"
           for code, item in catalog.items()}
    for row in progress.items:
        typer.echo(_line(row, law))
    estimated = sorted({year for row in progress.items for clock in row.clocks for year in clock.estimated})
    for year in estimated:
        typer.echo(f"注意：{calendar.warnings_for([year])[0]}", err=True)


def _line(r: ItemRow, law: Mapping[str, str] | None = None) -> str:
    """One ledger line, its fields separated by tabs: the level it stands at now in 【】, the
    reminders the sweep sent (its history) after it. ``law``: item code → its statutory limit as
    people read it, shown beside the 承诺时限 clock, which runs the catalog's promise."""
    from services.evaluation.ledger import CLOCK_NAMES_ZH

    consult = "（仅咨询）" if r.request.value == "consult" else ""
    parts = [f"{r.stage_name:<8}", f"{r.item_code} {r.item_name}{consult}", r.mode_name, r.responsible_unit_name,
             r.state_name]
    if r.waiting_for:
        parts.append("等待 " + "、".join(r.waiting_for) + " 办结移交")
    for clock in r.clocks:
        state = "计时中" if clock.running else "已停止"
        parts.append(f"{clock.name} 已用 {clock.used}/{clock.limit} 工作日（{state}），到期 {clock.due.isoformat()}"
                     + ("，超时" if clock.late else "")
                     + (f"（{clock.estimated_note}）" if clock.estimated else "")
                     + (f"（{law[r.item_code]}）" if clock.clock == "statutory" and law and r.item_code in law else ""))
    if r.task_order:
        t = r.task_order
        who = f"，服务专员 {t.specialist_name}（{t.specialist_phone}）" if t.specialist_name else ""
        parts.append(f"任务单 {t.number} {t.state_name}{'（自动下发）' if t.automatic else ''}{who}")
    elif r.task_order_required and not r.waiting_for:
        parts.append("任务单待经济发展招商服务局下发")
    if r.specialist_name and not r.task_order:  # 帮办代办: 政务服务局's 服务专员 (方案四(一))
        parts.append(f"服务专员 {r.specialist_name}（{r.specialist_phone}）")
    if r.level_name and r.running_clock:
        parts.append(f"【{CLOCK_NAMES_ZH[r.running_clock]}{r.level_name}】")
    if r.overdue_names:
        parts.append("已发超时提醒：" + "、".join(r.overdue_names))
    parts += [f"堵点：{b.reason}（须由{b.resolver_name}解决）" for b in r.blockers]
    if r.late_records:
        parts.append(f"补录 {r.late_records} 条")
    return "\t".join(parts)


@ledger_app.command("requests")
def ledger_requests(limit: Annotated[int, typer.Option(help="最多显示条数")] = 50) -> None:
    """被台账拒绝的请求及原因（首问负责、状态不符、测评不合规等）。"""
    from services.evaluation.ledger import LOCAL

    found = asyncio.run(on_ledger(lambda repo: repo.refused(limit)))
    typer.echo(f"共 {len(found)} 条被拒绝的请求")
    for outcome in found:
        typer.echo(f"{outcome.recorded_at.astimezone(LOCAL):%Y-%m-%d %H:%M}  {outcome.request_type:<22} {outcome.requested_by}  "
                   f"{outcome.request_id}：{outcome.reason}")


@ledger_app.command("verify")
def ledger_verify(
        repair: Annotated[bool, typer.Option("--repair", help="把与变更记录不符的台账行按变更记录改正")] = False) -> None:
    """核对台账：按每个事项的变更记录（每个版本写入一次、不再修改）重建该事项，与台账所显示的逐项比较。
    不一致时退出码为 1；--repair 按变更记录改正。"""
    from services.evaluation.audit import verify

    audit = asyncio.run(on_ledger(lambda repo: verify(repo, repair=repair)))
    typer.echo(f"核对 {audit.projects} 个项目的 {audit.lines} 个事项、{audit.entries} 条变更记录")
    for key in audit.differ:
        done = "（已按变更记录改正）" if key in audit.repaired else ""
        typer.echo(f"  不一致：{key} 的台账行不是其变更记录的最新版本{done}")
    for key in audit.unjournaled:
        typer.echo(f"  无变更记录：{key}（旧版本写入且未升级？启动一次评价服务即补写）")
    for problem in audit.broken:
        typer.echo(f"  变更记录不完整：{problem}")
    if audit.clean:
        typer.echo("台账与变更记录一致")
    elif not repair or audit.unjournaled or audit.broken:
        raise typer.Exit(1)


@ledger_app.command("journal")
def ledger_journal(project: Project, item: Annotated[str, typer.Argument(help="事项编码，如 PL-02")],
                   consult: Annotated[bool, typer.Option("--consult", help="“仅咨询”的那一行")] = False) -> None:
    """事项的变更记录：每个版本由谁、因哪个请求、在何时写入，改了什么。"""
    from services.common.domain import Request
    from services.evaluation.ledger import LOCAL, item_key

    key = item_key(project, item, Request.CONSULT if consult else Request.HANDLE)
    entries = asyncio.run(on_ledger(lambda repo: repo.journal(key)))
    if not entries:
        fail(f"台账中没有 {key} 的变更记录")
    from datetime import datetime

    for entry in entries:
        at = datetime.fromisoformat(entry["recorded_at"]).astimezone(LOCAL)
        if entry.get("base") is not None:
            what = "升级时的起点" if entry["reason"] == "upgrade" else "建立台账行"
            typer.echo(f"v{entry['version']:<3} {at:%Y-%m-%d %H:%M:%S}  {what}（状态 {entry['base']['state']}）")
            continue
        for h in entry["history"]:
            typer.echo(f"v{entry['version']:<3} {at:%Y-%m-%d %H:%M:%S}  {h['type']:<22} {h['from_state'] or '':>11} → "
                       f"{h['to_state']:<11} {h['by']}  请求 {h['request_id'] or '（台账自动）'}")
        if not entry["history"]:
            typer.echo(f"v{entry['version']:<3} {at:%Y-%m-%d %H:%M:%S}  改动 {', '.join(sorted(entry['changes']))}")


def sweep(today: Annotated[str | None, typer.Option(help="按哪一天计算（YYYY-MM-DD，默认今天）")] = None) -> None:
    """立即检查一遍超时事项（任务单下发、首问响应与承诺时限），发出预警/黄牌/红牌（评价服务也会定时检查）。"""
    from datetime import UTC, datetime

    from services.common.domain import OVERDUE_LEVEL_NAMES_ZH
    from services.common.settings import EvaluationSettings
    from services.common.yaml_files import RulesError
    from services.evaluation.app import read_rules, sweep_once
    from services.evaluation.holiday_file import load_calendar
    from services.evaluation.ledger import CLOCK_NAMES_ZH, local_day
    from services.evaluation.working_days import estimated_note

    now = datetime.now(UTC)
    on = day(today) if today else local_day(now)
    if on > local_day(now):
        fail(f"--today {on} 晚于今天：超时提醒会真实发给各单位，只能按今天或以前计算；"
             f"要预览以后的时钟，请用 zeroerrand ledger show 项目编码 --today {on}")
    try:
        rules = read_rules(EvaluationSettings().rules_dir)
        calendar = load_calendar(EvaluationSettings().rules_dir)
    except RulesError as exc:
        fail_problems("规则文件", exc)
    found: list[Any] = asyncio.run(sweep_once(rules, on, now, calendar))
    typer.echo(f"按 {on} 计算，发出 {len(found)} 条超时提醒")
    for event in found:
        typer.echo(f"  {event.project_code}/{event.item_code} {CLOCK_NAMES_ZH[event.clock]}"
                   f"{OVERDUE_LEVEL_NAMES_ZH[event.level]}：已用 {event.working_days_used}/{event.time_limit_days} "
                   f"个工作日，到期日 {event.due_on}"
                   + (f"（{estimated_note(event.estimated_years)}）" if event.estimated_years else ""))
