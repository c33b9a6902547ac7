"""``rules check`` / ``rules explain`` and ``catalog list``: the routing rules as operators read them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.cli._common import RulesDir, book, dump, fail, fail_problems, rules_dir
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
