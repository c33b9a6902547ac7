"""``zeroerrand``: the operator's entry point (run services, sign agreements, check and explain rules)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from services.common.domain import MODE_NAMES_ZH, STAGE_NAMES_ZH, Request, Unroutable
from services.common.rule_files import RuleBook, RulesError, load_rulebook
from services.common.settings import BrokerSettings, RouterSettings

app = typer.Typer(help="“企业零跑腿”服务系统 / Zero Errand: 路由、通知、评价服务与运维命令。", no_args_is_help=True,
                  pretty_exceptions_enable=False)
rules_app = typer.Typer(help="检查与解释路由规则 / check and explain the routing rules.", no_args_is_help=True)
catalog_app = typer.Typer(help="服务事项清单 / the item catalog.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(catalog_app, name="catalog")

RulesDir = Annotated[Path | None, typer.Option("--rules", help="规则目录（默认：ZEROERRAND_ROUTER_RULES_DIR 或仓库的 rules/）")]


def _rules_dir(rules: Path | None) -> Path:
    return rules or RouterSettings().rules_dir


def _fail(lines: list[str] | str, code: int = 1) -> None:
    for line in [lines] if isinstance(lines, str) else lines:
        typer.echo(line, err=True)
    raise typer.Exit(code)


def _book(rules: Path | None) -> RuleBook:
    try:
        return load_rulebook(_rules_dir(rules))
    except RulesError as exc:
        _fail([f"规则文件有 {len(exc.problems)} 处错误："] + [f"  {p}" for p in exc.problems])
        raise AssertionError("unreachable") from exc


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)


@app.command()
def router() -> None:
    """运行路由服务：消费 agreement.signed，按规则把每个审批事项投递到对应队列；规则文件改动后自动生效。"""
    from services.router.app import create_router

    _run_apps(create_router().app)


def _run_apps(*apps: Any) -> None:
    """Starts FastStream apps in one process and stops them, in reverse, on Ctrl-C or SIGTERM."""
    import signal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        started = []
        try:
            for service in apps:
                await service.start()
                started.append(service)
            await stop.wait()
        finally:
            for service in reversed(started):
                await service.stop()

    asyncio.run(run())


@app.command()
def notifier() -> None:
    """运行通知服务：把事件变成发给企业、招引单位、承办单位等的通知，存储并投递（站内信、Webhook）。"""
    from services.notifier.app import create_notifier

    _run_apps(create_notifier().app)


@app.command()
def up() -> None:
    """一条命令运行全部服务（路由 + 通知），未设置 MONGODB_URL 时使用内置存储；Ctrl-C 停止。"""
    from services.notifier.app import create_notifier
    from services.router.app import create_router

    _run_apps(create_router().app, create_notifier().app)


@app.command()
def sign(file: Annotated[Path, typer.Argument(help="协议文件（YAML 或 JSON），格式见 examples/agreements/README.md")]) -> None:
    """签约：发布一条 agreement.signed 消息（持久化、经 RabbitMQ 确认），启动“企业零跑腿”服务。"""
    from services.common.agreement_files import load_agreement, to_event
    from services.common.bus import BrokerPublisher, Outgoing, make_broker
    from services.common.topology import AGREEMENT_SIGNED, AGREEMENTS, declare_topology

    try:
        agreement = load_agreement(file)
    except RulesError as exc:
        _fail([f"协议文件有 {len(exc.problems)} 处错误："] + [f"  {p}" for p in exc.problems])
    event = to_event(agreement)

    async def publish() -> None:
        broker = make_broker(BrokerSettings().amqp_url)
        async with broker:
            await broker.connect()
            await declare_topology(broker)
            await BrokerPublisher(broker).publish_all(
                [Outgoing(AGREEMENTS, AGREEMENT_SIGNED, event, event.event_id, event.type)])

    try:
        asyncio.run(publish())
    except Exception as exc:
        _fail(f"发布失败（RabbitMQ {BrokerSettings().amqp_url}）：{exc}")
    typer.echo(f"已签约并发布：协议 {event.agreement_id}，项目 {event.project.code}（{event.project.name}），"
               f"审批策划 {len(event.plan)} 项；event_id {event.event_id}")


@rules_app.command("check")
def rules_check(rules: RulesDir = None) -> None:
    """静态检查：格式与引用（文件、行号、规则），以及每个事项在每种项目事实取值下恰好适用一条规则。"""
    from services.common.rules_check import check_rules

    book = _book(rules)
    report = check_rules(book)
    if not report.ok:
        _fail([f"规则版本 {report.version}：静态检查发现 {len(report.problems)} 个问题："]
              + [f"  {p}" for p in report.problems])
    typer.echo(f"规则版本 {report.version}：{len(book.units)} 个单位、{len(book.catalog)} 个事项、{len(book.rules)} 条规则，"
               f"检查了 {report.cases} 种情形，无遗漏、无重叠。")


def _parse_facts(book: RuleBook, pairs: list[str]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            _fail(f"--fact 需写成 名称=值，而不是 {pair!r}")
        spec = book.project_facts.get(name)
        value: Any = text
        if spec is not None and spec.type == "number":
            try:
                value = float(text) if any(c in text for c in ".eE") else int(text)
            except ValueError:
                _fail(f"项目事实 {name}（{spec.label}）是数值，{text!r} 不是数字")
        elif spec is not None and spec.type == "boolean":
            if text.lower() not in ("true", "false"):
                _fail(f"项目事实 {name}（{spec.label}）只能是 true 或 false")
            value = text.lower() == "true"
        facts[name] = value
    return facts


@rules_app.command("explain")
def rules_explain(
    file: Annotated[Path | None, typer.Argument(help="协议文件：逐项输出决策（不发布）")] = None,
    item: Annotated[str | None, typer.Option(help="事项编码，如 PL-03")] = None,
    fact: Annotated[list[str] | None, typer.Option(help="项目事实 名称=值，可重复，如 annual_energy_tce=6000")] = None,
    request: Annotated[Request, typer.Option(help="handle（办理）或 consult（仅咨询）")] = Request.HANDLE,
    rules: RulesDir = None,
) -> None:
    """解释：输出决策记录（JSON）：服务方式、承办单位、路由键、决定的规则、规则版本、所用事实。"""
    from services.router.active_rules import load_checked

    if (file is None) == (item is None):
        _fail("请给出协议文件，或用 --item 指定事项编码（二者选一）")
    try:
        engine = load_checked(_rules_dir(rules))
    except RulesError as exc:
        _fail([f"规则文件有 {len(exc.problems)} 处错误："] + [f"  {p}" for p in exc.problems])
    if item is not None:
        decision = engine.decide(item, request, _parse_facts(engine.book, fact or []))
        typer.echo(_dump(_explained(decision)))
        if isinstance(decision, Unroutable):
            raise typer.Exit(2)
        return
    from services.common.agreement_files import load_agreement, to_event
    from services.router.routing import route_agreement

    assert file is not None
    try:
        agreement = to_event(load_agreement(file))
    except RulesError as exc:
        _fail([f"协议文件有 {len(exc.problems)} 处错误："] + [f"  {p}" for p in exc.problems])
    result = route_agreement(agreement, engine)
    if result.rejected is not None:
        typer.echo(_dump({"agreement_id": agreement.agreement_id, "rejected": True, "reasons": result.rejected.reasons}))
        raise typer.Exit(2)
    by_id = {r.item.item_id: _explained(r.item.decision, r.item.item_code) for r in result.routed}
    by_id |= {u.item_id: _explained(u.unroutable, u.item_code) for u in result.unroutable}
    from services.common.messages import stable_id

    for position, planned in enumerate(agreement.plan, start=1):
        typer.echo(json.dumps(by_id[stable_id(agreement.agreement_id, str(position), planned.item)],
                              ensure_ascii=False, default=str))


def _explained(decision: Any, item_code: str | None = None) -> dict[str, Any]:
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
    book = _book(rules)
    if as_json:
        typer.echo(_dump([item.model_dump(mode="json") for item in book.catalog.values()]))
        return
    typer.echo(f"服务事项清单（规则版本 {book.version}，共 {len(book.catalog)} 项）")
    for item in book.catalog.values():
        owner = book.units[item.owner].short_name
        fees = "、".join(f.name for f in item.fees) or "无"
        typer.echo(f"{item.code}  {STAGE_NAMES_ZH[item.stage]:<8}\t{item.name}\t{owner}\t{item.time_limit_days} 个工作日"
                   f"\t材料 {len(item.materials)} 项\t法定收费：{fees}")


notifications_app = typer.Typer(help="通知记录 / stored notifications.", no_args_is_help=True)
app.add_typer(notifications_app, name="notifications")

STATUS_ZH = {"delivered": "已送达", "pending": "待投递", "sending": "投递中", "failed": "投递失败"}


@notifications_app.command("list")
def notifications_list(
    project: Annotated[str | None, typer.Option(help="项目编码")] = None,
    recipient: Annotated[str | None, typer.Option(
        help="接收方：单位编码、统一社会信用代码，或 unit:xxx / enterprise:xxx / role:operators")] = None,
    status: Annotated[str | None, typer.Option(help="delivered / pending / sending / failed")] = None,
    limit: Annotated[int, typer.Option(help="最多显示条数")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False,
    body: Annotated[bool, typer.Option("--body", help="同时显示通知正文")] = False,
) -> None:
    """列出已发出的通知：发给谁、经哪个渠道、是否送达。"""
    from services.common.storage import StoreUnavailable, store_session
    from services.notifier.repository import COLLECTIONS, NotifierRepository

    async def query() -> list[dict[str, Any]]:
        async with store_session(collections=COLLECTIONS) as store:
            return await NotifierRepository(store).find(project=project, recipient=recipient, status=status,
                                                        limit=limit)

    try:
        found = asyncio.run(query())
    except StoreUnavailable as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(_dump(found))
        return
    typer.echo(f"共 {len(found)} 条通知")
    for doc in found:
        when = doc["created_at"].astimezone().strftime("%Y-%m-%d %H:%M:%S")
        state = STATUS_ZH.get(doc["status"], doc["status"])
        extra = f"（{doc['attempts']} 次尝试：{doc['last_error']}）" if doc.get("last_error") else ""
        typer.echo(f"{when}  {doc['event_type']:<18} {doc['channel']:<7} {state}{extra}  "
                   f"{doc['recipient_name']}  《{doc['title']}》")
        if body:
            typer.echo("    " + doc["body"].replace("\n", "\n    "))


def main() -> None:
    app(prog_name="zeroerrand")


if __name__ == "__main__":
    main()
