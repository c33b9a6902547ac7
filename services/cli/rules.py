"""``rules check`` / ``rules explain`` and ``catalog list``: the routing rules as operators read them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.cli._common import RulesDir, book, dump, fail, fail_problems, publish_failed, rules_dir
from services.common.domain import Request

if TYPE_CHECKING:
    from services.common.rule_files import RuleBook

rules_app = typer.Typer(help="检查与解释路由规则 / check and explain the routing rules.", no_args_is_help=True)
catalog_app = typer.Typer(help="服务事项清单 / the item catalog.", no_args_is_help=True)


@rules_app.command("check")
def rules_check(rules: RulesDir = None) -> None:
    """静态检查：格式与引用（文件、行号、规则），以及每个事项在每种项目事实取值下恰好适用一条规则。"""
    from services.common.rule_files import load_rulebook, read_rule_files, rules_version
    from services.common.settings import RouterSettings
    from services.common.yaml_files import RulesError
    from services.router.candidate import check_candidate
    from services.router.rules_check import cases_to_try

    # the same bounded check the router runs on a candidate, so both give the same verdict
    settings = RouterSettings()
    directory = rules_dir(rules)
    try:
        contents = read_rule_files(directory)
    except RulesError as exc:
        fail_problems("规则文件", exc)
    problems = asyncio.run(check_candidate(directory, contents, timeout_s=settings.check_timeout_s,
                                           memory_bytes=settings.check_memory_mb * 2**20))
    if problems:
        fail([f"规则版本 {rules_version(contents.items())}：发现 {len(problems)} 个问题："] + [f"  {p}" for p in problems])
    checked = load_rulebook(directory, contents)  # passed the check: read again only for the figures below
    typer.echo(f"规则版本 {checked.version}：{len(checked.units)} 个单位、{len(checked.catalog)} 个事项、"
               f"{len(checked.rules)} 条规则，检查了 {cases_to_try(checked)} 种情形，无遗漏、无重叠。")
    unsure = [item for item in checked.catalog.values() if item.to_confirm]
    if unsure:  # what the policy office has still to confirm (the catalog's to_confirm): shown, never silent
        typer.echo(f"待核实：事项清单中 {len(unsure)} 个事项有待政策办核实的内容（catalog.yaml 的 to_confirm）："
                   + "、".join(f"{item.code} {item.name}" for item in unsure))
    lawless = [item.code for item in checked.catalog.values() if item.statutory_limit is None]
    typer.echo(f"时限：{len(checked.catalog)} 个事项均按承诺时限计时，"
               f"其中 {len(lawless)} 个没有法定时限（法律法规未规定期限或即时办结）"
               + (f"（{'、'.join(lawless)}）" if lawless else "") + "，其余的承诺不长于法定时限。")
    _check_calendar(directory)


def _check_calendar(directory: Path) -> None:
    """calendar.yaml (its problems with file and line, exit 1), and where this year's and next year's
    working days come from: a year with no data is said to be estimated on Monday–Friday."""
    from datetime import UTC, datetime

    from services.common.yaml_files import RulesError
    from services.evaluation.holiday_file import load_calendar
    from services.evaluation.ledger import local_day

    try:
        calendar = load_calendar(directory)
    except RulesError as exc:
        fail_problems("节假日安排文件", exc)
    this_year = local_day(datetime.now(UTC)).year
    for year in (this_year, this_year + 1):
        typer.echo(f"{year} 年节假日：{calendar.source_of(year)}")
    for year in sorted({this_year, this_year + 1, *calendar.years}):
        if not calendar.has_data(year):
            typer.echo(f"注意：{calendar.warnings_for([year])[0]}", err=True)


@rules_app.command("explain")
def rules_explain(
    file: Annotated[Path | None, typer.Argument(help="协议文件：逐项输出决策（不发布）")] = None,
    item: Annotated[str | None, typer.Option(help="事项编码，如 PL-03")] = None,
    fact: Annotated[list[str] | None, typer.Option(help="项目事实 名称=值，可重复，如 annual_energy_tce=6000")] = None,
    request: Annotated[Request, typer.Option(help="handle（办理）或 consult（仅咨询）")] = Request.HANDLE,
    rules: RulesDir = None,
) -> None:
    """解释：输出决策记录（JSON）：服务方式、承办单位、路由键、决定的规则、规则版本、所用事实。"""
    from services.common.domain import Unroutable
    from services.common.yaml_files import RulesError
    from services.router.active_rules import load_checked

    if (file is None) == (item is None):
        fail("请给出协议文件，或用 --item 指定事项编码（二者选一）")
    try:
        engine = load_checked(rules_dir(rules))
    except RulesError as exc:
        fail_problems("规则文件", exc)
    if item is not None:
        decision = engine.decide(item, request, _parse_facts(engine.book, fact or []))
        typer.echo(dump(_explained(decision)))
        if isinstance(decision, Unroutable):
            raise typer.Exit(2)
        return
    from services.common.agreement_files import load_agreement, to_event
    from services.common.messages import stable_id
    from services.router.routing import route_agreement

    assert file is not None
    try:
        agreement = to_event(load_agreement(file))
    except RulesError as exc:
        fail_problems("协议文件", exc)
    result = route_agreement(agreement, engine)
    if result.rejected is not None:
        typer.echo(dump({"agreement_id": agreement.agreement_id, "rejected": True, "reasons": result.rejected.reasons}))
        raise typer.Exit(2)
    by_id = {r.item.item_id: _explained(r.item.decision, r.item.item_code) for r in result.routed}
    by_id |= {u.item_id: _explained(u.unroutable, u.item_code) for u in result.unroutable}
    for position, planned in enumerate(agreement.plan, start=1):
        typer.echo(json.dumps(by_id[stable_id(agreement.agreement_id, str(position), planned.item)],
                              ensure_ascii=False, default=str))


def _parse_facts(rule_book: RuleBook, pairs: list[str]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            fail(f"--fact 需写成 名称=值，而不是 {pair!r}")
        spec = rule_book.project_facts.get(name)
        try:
            facts[name] = text if spec is None else spec.parse(name, text)
        except ValueError as exc:
            fail(str(exc))
    return facts


def _explained(decision: Any, item_code: str | None = None) -> dict[str, Any]:
    from services.common.domain import MODE_NAMES_ZH, Unroutable

    data: dict[str, Any] = {"item": item_code} if item_code else {}
    if isinstance(decision, Unroutable):
        data |= {"routable": False, **decision.model_dump(mode="json")}
    else:
        data |= {"routable": True, "mode_name": MODE_NAMES_ZH[decision.mode], **decision.model_dump(mode="json")}
    return data


# -- what candidate rules would change, and the history of the versions that were in force -------


@rules_app.command("dry-run")
def rules_dry_run(
    rules: Annotated[Path, typer.Option("--rules", help="候选规则目录（与生效规则比较）")],
    items: Annotated[Path | None, typer.Option(
        "--items", help="以往事项的导出文件（JSON Lines，一行一个事项）；默认：台账中的全部事项")] = None,
    active: Annotated[Path | None, typer.Option(
        "--active", help="生效规则目录（默认：ZEROERRAND_ROUTER_RULES_DIR 或仓库的 rules/）")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False,
    no_memo: Annotated[bool, typer.Option("--no-memo", help="不复用相同事实的决策（逐项重新决策，用于测量）")] = False,
) -> None:
    """预演：候选规则与生效规则相比，哪些事项的分派会改变（退出码 0 无改变，3 有改变，1 候选规则无效）。"""
    from services.common.settings import RouterSettings
    from services.router.dry_run import ItemsFileError, render
    from services.router.dry_run_command import dry_run, problem_lines
    from services.router.reroute import read_active_version

    settings = RouterSettings()
    try:
        outcome = dry_run(rules, rules_dir(active), items, timeout_s=settings.check_timeout_s,
                          memory_bytes=settings.check_memory_mb * 2**20, memo=not no_memo)
    except (ItemsFileError, OSError) as exc:
        fail(f"无法读取事项：{exc}")
    # over the ledger, the store is at hand: say when the rules compared with are not the router's
    in_force = asyncio.run(read_active_version()) if items is None and outcome.report is not None else None
    stale = in_force is not None and outcome.report is not None and in_force != outcome.report.active_version
    if as_json:
        typer.echo(dump({**outcome.as_json(), "router_active_version": in_force}))
        raise typer.Exit(outcome.exit_code)
    if outcome.problems:
        fail(list(problem_lines(outcome)), outcome.exit_code)
    if outcome.error is not None:
        fail(outcome.error, outcome.exit_code)
    assert outcome.report is not None
    for line in render(outcome.report):
        typer.echo(line)
    if stale:
        typer.echo(f"注意：用作比较的生效规则（{rules_dir(active)}，版本 {outcome.report.active_version}）不是路由服务正在使用的"
                   f"版本 {in_force}（见 zeroerrand rules history）：请用 --active 指向路由服务的规则目录", err=True)
    raise typer.Exit(outcome.exit_code)


@rules_app.command("history")
def rules_history(as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False) -> None:
    """规则版本历史：每个曾经生效的版本、生效时间、分派的事项数、与上一版本相比各文件的改动。"""
    from services.common.domain import NEW_AREA_TIME
    from services.router.rules_history import read_history
    from services.router.versions import render_history

    entries = asyncio.run(read_history())
    if as_json:
        typer.echo(dump([e.as_json() for e in entries]))
        return
    for line in render_history(entries, NEW_AREA_TIME):
        typer.echo(line)


@rules_app.command("show")
def rules_show(version: Annotated[str, typer.Argument(help="规则版本（或其唯一前缀），见 zeroerrand rules history")],
               file: Annotated[str | None, typer.Option("--file", help="只显示这个文件，如 routing.yaml")] = None) -> None:
    """显示某个曾经生效的规则版本的文件内容。"""
    from services.router.rules_history import read_version
    from services.router.versions import AmbiguousVersion

    try:
        found = asyncio.run(read_version(version))
    except AmbiguousVersion as exc:
        fail(f"规则版本前缀 {version} 对应多个版本：{'、'.join(exc.matches)}；请多写几位")
    if found is None:
        fail(f"没有存档的规则版本 {version}（见 zeroerrand rules history）")
    full, files = found
    if file is not None:
        if file not in files:
            fail(f"规则版本 {full} 中没有文件 {file}（有：{'、'.join(sorted(files))}）")
        typer.echo(files[file], nl=False)
        return
    for name, text in sorted(files.items()):
        typer.echo(f"# ===== {name}（规则版本 {full}）=====")
        typer.echo(text, nl=not text.endswith("\n"))


@rules_app.command("reroute")
def rules_reroute(
    project: Annotated[str, typer.Option("--project", help="项目编码：重新决策该项目尚未受理的未办结事项")],
    rules: Annotated[Path | None, typer.Option(
        "--rules", help="生效规则目录（默认：ZEROERRAND_ROUTER_RULES_DIR 或仓库的 rules/；须为路由服务当前生效的版本）")] = None,
    operator: Annotated[str | None, typer.Option("--operator", help="代政务服务局操作的工作人员姓名（记入台账）")] = None,
    wait: Annotated[float, typer.Option("--wait", help="等待台账处理结果的秒数（0：不等待）")] = 15,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="只显示会改派哪些事项，不提交")] = False,
) -> None:
    """重新分派（方案五(七)）：按生效规则重新决策项目中尚未受理的未办结事项，决策改变的由政务服务局提交改派，
    台账通知原承办单位、新承办单位和企业（退出码 0 全部改派或无需改派，1 有被拒绝或无法改派的）。"""
    from services.common.yaml_files import RulesError
    from services.router.reroute import load_engine, run_reroute

    try:
        engine = load_engine(rules_dir(rules))
    except RulesError as exc:
        fail_problems("规则文件", exc)
    names = {code: unit.short_name for code, unit in engine.book.units.items()}
    try:
        code = run_reroute(project, engine, names, operator=operator, wait_s=wait, dry_run=dry_run, echo=typer.echo)
    except Exception as exc:  # publishing: where to, and why (the store's errors are said by main())
        from services.common.settings import BrokerUnavailable, SettingsError
        from services.common.storage import StoreSchemaError, StoreUnavailable

        # a closed output (`| head`) is not a publishing failure either
        if isinstance(exc, (StoreUnavailable, StoreSchemaError, SettingsError, BrokerUnavailable, BrokenPipeError)):
            raise
        publish_failed(exc)
    raise typer.Exit(code)


@catalog_app.command("list")
def catalog_list(as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False,
                 rules: RulesDir = None) -> None:
    """列出服务事项清单：编码、名称、阶段、审批单位、时限（工作日）、材料数、法定收费。"""
    from services.common.domain import STAGE_NAMES_ZH

    catalog = book(rules)
    if as_json:
        typer.echo(dump([item.model_dump(mode="json") for item in catalog.catalog.values()]))
        return
    typer.echo(f"服务事项清单（规则版本 {catalog.version}，共 {len(catalog.catalog)} 项）")
    for item in catalog.catalog.values():
        owner = catalog.units[item.owner].short_name
        fees = "、".join(f.name for f in item.fees) or "无"
        typer.echo(f"{item.code}  {STAGE_NAMES_ZH[item.stage]:<8}\t{item.name}\t{owner}\t{item.time_limit_days} 个工作日"
                   f"\t材料 {len(item.materials)} 项\t法定收费：{fees}")
