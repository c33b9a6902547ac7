"""``zeroerrand``: the operator's entry point (run services, sign agreements, check and explain rules)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from services.common.domain import MODE_NAMES_ZH, OVERDUE_LEVEL_NAMES_ZH, STAGE_NAMES_ZH, Request, Unroutable
from services.common.rule_files import RuleBook, RulesError, load_rulebook, rules_version
from services.common.settings import BrokerSettings, RouterSettings, mask_url, mask_urls_in

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


def _publish_failed(exc: BaseException) -> None:
    """Publishing failed: says where to (the broker's URL, its password masked) and why."""
    url = BrokerSettings().amqp_url
    _fail(f"发布失败（RabbitMQ {mask_url(url)}）：{mask_urls_in(str(exc) or repr(exc))}")


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)


@app.command()
def router() -> None:
    """运行路由服务：消费 agreement.signed，按规则把每个审批事项投递到对应队列；规则文件改动后自动生效。"""
    from services.router.app import create_router

    service = create_router()
    _run_apps(service.app, watched=[service.watched()])


def _run_apps(*apps: Any, watched: Sequence[Any] = ()) -> None:
    """Starts FastStream apps in one process and stops them, in reverse, on Ctrl-C or SIGTERM; with
    ``ZEROERRAND_METRICS_PORT`` set, serves ``/metrics`` and ``/health`` for the ``watched`` services
    (``services.common.operations``) once they have started, until they stop."""
    import signal

    from services.common.logs import configure_logging
    from services.common.operations import OperationsServer
    from services.common.settings import OperationsSettings

    operations = OperationsSettings()
    configure_logging(operations.log_format)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        started = []
        endpoint = OperationsServer(watched, operations) if operations.metrics_port is not None else None
        try:
            for service in apps:
                await service.start()
                started.append(service)
            if endpoint is not None:
                await endpoint.start()
            await stop.wait()
        finally:
            if endpoint is not None:
                await endpoint.stop()
            # all at once: each stops consuming, lets its work in flight finish for a few seconds
            # (or go back to its queue) and closes its store, so the process exits within 10 s
            results = await asyncio.gather(*(service.stop() for service in reversed(started)), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    logging.getLogger(__name__).error("stopping a service failed: %r", result)

    asyncio.run(run())


@app.command()
def notifier() -> None:
    """运行通知服务：把事件变成发给企业、招引单位、承办单位等的通知，存储并投递（站内信、Webhook）。"""
    from services.notifier.app import create_notifier

    service = create_notifier()
    _run_apps(service.app, watched=[service.watched()])


@app.command()
def evaluation() -> None:
    """运行评价服务：维护年度综合评价台账（项目、事项状态、时限、堵点、评价），定时发出超时预警。"""
    from services.evaluation.app import create_evaluation

    service = create_evaluation()
    _run_apps(service.app, watched=[service.watched()])


@app.command()
def up(no_console: Annotated[bool, typer.Option("--no-console", help="不启动服务台（网页）")] = False) -> None:
    """一条命令运行全部服务（路由 + 通知 + 评价 + 服务台网页，默认 http://127.0.0.1:8080），
    未设置 MONGODB_URL 时使用内置存储；Ctrl-C 停止。"""
    from services.evaluation.app import create_evaluation
    from services.notifier.app import create_notifier
    from services.router.app import create_router

    router, notifier, evaluation = create_router(), create_notifier(), create_evaluation()
    services: list[Any] = [router.app, notifier.app, evaluation.app]
    watched = [router.watched(), notifier.watched(), evaluation.watched()]
    if not no_console:
        console = _console()
        services.append(console)
        watched.append(console.watched())
    _run_apps(*services, watched=watched)


def _console() -> Any:
    from services.console.app import create_console

    try:
        return create_console()
    except RulesError as exc:
        _fail([f"规则文件有 {len(exc.problems)} 处错误，服务台未启动："] + [f"  {p}" for p in exc.problems])


@app.command()
def console(port: Annotated[int | None, typer.Option(help="端口（默认 ZEROERRAND_CONSOLE_PORT 或 8080）")] = None,
            host: Annotated[str | None, typer.Option(help="监听地址（默认 ZEROERRAND_CONSOLE_HOST 或 127.0.0.1）")] = None,
            ) -> None:
    """只运行服务台（网页）：企业凭访问码查看项目进度，各单位工作人员登录办理；可运行多个副本，共用同一存储。"""
    import os

    if port is not None:
        os.environ["ZEROERRAND_CONSOLE_PORT"] = str(port)
    if host is not None:
        os.environ["ZEROERRAND_CONSOLE_HOST"] = host
    service = _console()
    _run_apps(service, watched=[service.watched()])


@app.command()
def sign(file: Annotated[Path, typer.Argument(help="协议文件（YAML 或 JSON），格式见 examples/agreements/README.md")]) -> None:
    """签约：发布一条 agreement.signed 消息（持久化、经 RabbitMQ 确认），启动“企业零跑腿”服务。"""
    from services.common.agreement_files import load_agreement, signed_event
    from services.common.bus import BrokerPublisher, Outgoing, make_broker
    from services.common.topology import AGREEMENT_SIGNED, AGREEMENTS, declare_topology

    try:
        event = signed_event(file, load_agreement(file), RouterSettings().max_agreement_bytes)
    except RulesError as exc:
        _fail([f"协议文件有 {len(exc.problems)} 处错误："] + [f"  {p}" for p in exc.problems])

    async def publish() -> None:
        broker = make_broker(BrokerSettings())
        async with broker:
            await broker.connect()
            await declare_topology(broker)
            await BrokerPublisher(broker).publish_all(
                [Outgoing(AGREEMENTS, AGREEMENT_SIGNED, event, event.event_id, event.type)])

    try:
        asyncio.run(publish())
    except Exception as exc:
        _publish_failed(exc)
    typer.echo(f"已签约并发布：协议 {event.agreement_id}，项目 {event.project.code}（{event.project.name}），"
               f"审批策划 {len(event.plan)} 项；event_id {event.event_id}")


@rules_app.command("check")
def rules_check(rules: RulesDir = None) -> None:
    """静态检查：格式与引用（文件、行号、规则），以及每个事项在每种项目事实取值下恰好适用一条规则。"""
    from services.common.rule_files import read_rule_files
    from services.common.rules_check import cases_to_try
    from services.router.candidate import check_candidate

    # the same bounded check the router runs on a candidate, so both give the same verdict
    settings = RouterSettings()
    directory = _rules_dir(rules)
    try:
        contents = read_rule_files(directory)
    except RulesError as exc:
        _fail([f"规则文件有 {len(exc.problems)} 处错误："] + [f"  {p}" for p in exc.problems])
        raise AssertionError("unreachable") from exc
    problems = asyncio.run(check_candidate(directory, contents, timeout_s=settings.check_timeout_s,
                                           memory_bytes=settings.check_memory_mb * 2**20))
    if problems:
        _fail([f"规则版本 {rules_version(contents.items())}：发现 {len(problems)} 个问题："] + [f"  {p}" for p in problems])
    book = load_rulebook(directory, contents)  # passed the check: read again only for the figures below
    typer.echo(f"规则版本 {book.version}：{len(book.units)} 个单位、{len(book.catalog)} 个事项、{len(book.rules)} 条规则，"
               f"检查了 {cases_to_try(book)} 种情形，无遗漏、无重叠。")


def _parse_facts(book: RuleBook, pairs: list[str]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            _fail(f"--fact 需写成 名称=值，而不是 {pair!r}")
        spec = book.project_facts.get(name)
        try:
            facts[name] = text if spec is None else spec.parse(name, text)
        except ValueError as exc:
            _fail(str(exc))
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


# -- rules dry-run, history, show (issue 12): thin commands over services/router/dry_run*.py,
# services/router/versions.py and the ledger's side in services/evaluation/ -------------------------


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
    from services.router.dry_run import ItemsFileError, render
    from services.router.dry_run_command import dry_run, problem_lines

    settings = RouterSettings()
    try:
        outcome = dry_run(rules, _rules_dir(active), items, timeout_s=settings.check_timeout_s,
                          memory_bytes=settings.check_memory_mb * 2**20, memo=not no_memo)
    except (ItemsFileError, OSError) as exc:
        _fail(f"无法读取事项：{exc}")
    if as_json:
        typer.echo(_dump(outcome.as_json()))
        raise typer.Exit(outcome.exit_code)
    if outcome.problems:
        _fail(list(problem_lines(outcome)), outcome.exit_code)
    if outcome.error is not None:
        _fail(outcome.error, outcome.exit_code)
    assert outcome.report is not None
    for line in render(outcome.report):
        typer.echo(line)
    raise typer.Exit(outcome.exit_code)


@rules_app.command("history")
def rules_history(as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False) -> None:
    """规则版本历史：每个曾经生效的版本、生效时间、分派的事项数、与上一版本相比各文件的改动。"""
    from services.router.rules_history import read_history
    from services.router.versions import render_history

    entries = asyncio.run(read_history())
    if as_json:
        typer.echo(_dump([e.as_json() for e in entries]))
        return
    for line in render_history(entries, ZoneInfo("Asia/Shanghai")):
        typer.echo(line)


@rules_app.command("show")
def rules_show(version: Annotated[str, typer.Argument(help="规则版本（或其唯一前缀），见 zeroerrand rules history")],
               file: Annotated[str | None, typer.Option("--file", help="只显示这个文件，如 routing.yaml")] = None) -> None:
    """显示某个曾经生效的规则版本的文件内容。"""
    from services.router.rules_history import read_version

    files = asyncio.run(read_version(version))
    if files is None:
        _fail(f"没有存档的规则版本 {version}（见 zeroerrand rules history）")
        return
    if file is not None:
        if file not in files:
            _fail(f"规则版本 {version} 中没有文件 {file}（有：{'、'.join(sorted(files))}）")
        typer.echo(files[file], nl=False)
        return
    for name, text in sorted(files.items()):
        typer.echo(f"# ===== {name}（规则版本 {version}）=====")
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
    from services.router.reroute import load_engine, run_reroute

    try:
        engine = load_engine(_rules_dir(rules))
    except RulesError as exc:
        _fail([f"规则文件有 {len(exc.problems)} 处错误："] + [f"  {p}" for p in exc.problems])
    names = {code: unit.short_name for code, unit in engine.book.units.items()}
    try:
        code = run_reroute(project, engine, names, operator=operator, wait_s=wait, dry_run=dry_run, echo=typer.echo)
    except Exception as exc:  # publishing: where to, and why (the store's errors are said by main())
        from services.common.settings import BrokerUnavailable, SettingsError
        from services.common.storage import StoreSchemaError, StoreUnavailable

        if isinstance(exc, (StoreUnavailable, StoreSchemaError, SettingsError, BrokerUnavailable)):
            raise
        _publish_failed(exc)
    raise typer.Exit(code)


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

LOCAL = ZoneInfo("Asia/Shanghai")  # the New Area's time: what people read is in it
# an inbox notification is unread until its recipient opens it in the console, then delivered
STATUS_ZH = {"unread": "未读", "delivered": "已送达", "pending": "待投递", "sending": "投递中", "failed": "投递失败"}


@notifications_app.command("list")
def notifications_list(
    project: Annotated[str | None, typer.Option(help="项目编码")] = None,
    recipient: Annotated[str | None, typer.Option(
        help="接收方：单位编码、统一社会信用代码，或 unit:xxx / enterprise:xxx / role:operators")] = None,
    status: Annotated[str | None, typer.Option(
        help="unread（站内信未读）/ delivered（已读或已被外部渠道接收）/ pending / sending / failed")] = None,
    limit: Annotated[int, typer.Option(help="最多显示条数")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False,
    body: Annotated[bool, typer.Option("--body", help="同时显示通知正文")] = False,
) -> None:
    """列出已发出的通知：发给谁、经哪个渠道（站内信、Webhook、邮件、短信）、是否送达（站内信：是否已读）。"""
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
        when = doc["created_at"].astimezone(LOCAL).strftime("%Y-%m-%d %H:%M:%S")
        state = STATUS_ZH.get(doc["status"], doc["status"])
        extra = f"（{doc['attempts']} 次尝试：{doc['last_error']}）" if doc.get("last_error") else ""
        if doc.get("read_at"):
            extra += f"（{doc['read_at'].astimezone(LOCAL).strftime('%m-%d %H:%M')} 已读）"
        typer.echo(f"{when}  {doc['event_type']:<18} {doc['channel']:<7} {state}{extra}  "
                   f"{doc['recipient_name']}  《{doc['title']}》")
        if body:
            typer.echo("    " + doc["body"].replace("\n", "\n    "))


# -- evaluation: requests to the ledger, sweep, ledger, annual report -------------------------------

item_app = typer.Typer(help="为没有自建系统的单位向台账提交事项进度请求 / report an item's progress.", no_args_is_help=True)
app.add_typer(item_app, name="item")
task_order_app = typer.Typer(help="专业跑腿服务任务单 / task orders.", no_args_is_help=True)
app.add_typer(task_order_app, name="task-order")
ledger_app = typer.Typer(help="年度综合评价台账 / the ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")

Project = Annotated[str, typer.Argument(help="项目编码（一项一码）")]
Item = Annotated[str, typer.Argument(help="事项编码，如 EP-03")]
By = Annotated[str, typer.Option("--by", help="提交请求的单位编码（首问负责：须为该事项的承办单位）")]
Operator = Annotated[str | None, typer.Option("--operator", help="代该单位操作的工作人员姓名（记入台账）")]
Consult = Annotated[bool, typer.Option("--consult", help="指“仅咨询”那一条（同一事项既办理又咨询时）")]
At = Annotated[str | None, typer.Option("--at", help="发生时间（ISO 格式，补录时用；默认现在）")]
Wait = Annotated[float, typer.Option("--wait", help="等待台账处理结果的秒数（0：不等待）")]


def _day(text: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        _fail(f"不是日期：{text!r}（应写成 YYYY-MM-DD，如 2026-10-09）")


def _when(at: str | None) -> Any:
    from datetime import UTC, datetime

    if at is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        _fail(f"--at 不是 ISO 时间：{at!r}（例如 2026-10-09T10:30:00+08:00）")
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    return moment


def _submit(model: Any, wait: float, describe: str, **fields: Any) -> Any:
    """Sends one request to the ledger and, unless ``wait`` is 0, prints what became of it."""
    import uuid
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from services.common.bus import BrokerPublisher, make_broker, request_out
    from services.common.topology import declare_topology

    fields.setdefault("occurred_at", datetime.now(UTC))
    try:
        command = model(request_id=str(uuid.uuid4()), requested_at=datetime.now(UTC), **fields)
    except ValidationError as exc:
        _fail(f"请求内容不完整：{exc}")

    async def publish() -> None:
        broker = make_broker(BrokerSettings())
        async with broker:
            await broker.connect()
            await declare_topology(broker)
            await BrokerPublisher(broker).publish_all([request_out(command)])

    try:
        asyncio.run(publish())
    except Exception as exc:
        _publish_failed(exc)
    typer.echo(f"已提交{describe}，请求编号 {command.request_id}")
    if wait > 0:
        outcome = asyncio.run(_await_outcome(command.request_id, wait))
        if outcome is None:
            _fail(f"{wait:g} 秒内台账未处理该请求（评价服务是否在运行？）；稍后可用 zeroerrand ledger requests 查看", 3)
        elif outcome.status == "refused":
            _fail(f"台账拒绝了该请求：{outcome.reason}")
        else:
            typer.echo("台账已接受。")
    return command


async def _await_outcome(request_id: str, wait: float) -> Any:
    from services.common.storage import store_session
    from services.evaluation.repository import COLLECTIONS, MongoLedgerRepository
    from services.evaluation.views import request_outcome

    async with store_session(collections=COLLECTIONS) as store:
        return await request_outcome(MongoLedgerRepository(store), request_id, wait, poll_s=0.2)


def _item_request(kind: str, project: str, item: str, by: str, operator: str | None, consult: bool, at: str | None,
                  wait: float, **fields: Any) -> None:
    from services.common import messages as m
    from services.common.domain import Request

    models: dict[str, type[m.ItemCommand]] = {
             "contact": m.ContactEnterprise, "accept": m.AcceptItem, "progress": m.ReportProgress,
             "block": m.ReportBlocker, "report_issue": m.ReportEnterpriseIssue,
             "unblock": m.ResolveBlocker, "suspend": m.SuspendItem, "resume": m.ResumeItem,
             "complete": m.CompleteItem, "deliver": m.DeliverResults, "issue": m.IssueTaskOrder,
             "accept_order": m.AcceptTaskOrder}
    model = models[kind]
    from services.common.domain import REQUEST_NAMES_ZH

    action = REQUEST_NAMES_ZH[str(model.model_fields["type"].default)]
    _submit(model, wait, f"“{action}”请求：{project}/{item}（{by}）", project_code=project,
            item_code=item, requested_by=by, operator=operator, occurred_at=_when(at),
            request=Request.CONSULT if consult else None, **fields)


@item_app.command("contact")
def item_contact(project: Project, item: Item, by: By, operator: Operator = None, consult: Consult = False,
                 at: At = None, wait: Wait = 15, note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """首问负责：已对接企业（停止首问响应计时）。"""
    _item_request("contact", project, item, by, operator, consult, at, wait, note=note)


@item_app.command("accept")
def item_accept(project: Project, item: Item, by: By, operator: Operator = None, consult: Consult = False,
                at: At = None, wait: Wait = 15, note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """受理事项（开始按法定时限计时）。"""
    _item_request("accept", project, item, by, operator, consult, at, wait, note=note)


@item_app.command("progress")
def item_progress(project: Project, item: Item, by: By, note: Annotated[str, typer.Option(help="进展情况")],
                  operator: Operator = None, consult: Consult = False, at: At = None, wait: Wait = 15) -> None:
    """报告办理进度。"""
    _item_request("progress", project, item, by, operator, consult, at, wait, note=note)


@item_app.command("block")
def item_block(project: Project, item: Item, by: By, reason: Annotated[str, typer.Option(help="堵点/卡点成因")],
               resolver: Annotated[str, typer.Option(help="须由哪个单位解决（单位编码）")],
               operator: Operator = None, consult: Consult = False, at: At = None, wait: Wait = 15) -> None:
    """报告堵点/卡点：原因与须由谁解决。"""
    _item_request("block", project, item, by, operator, consult, at, wait, reason=reason, resolver=resolver)


@item_app.command("report-issue")
def item_report_issue(project: Project, item: Item,
                      by: Annotated[str, typer.Option("--by", help="服务对象企业的统一社会信用代码（18 位）")],
                      reason: Annotated[str, typer.Option(help="企业反映的堵点/卡点")],
                      operator: Annotated[str | None, typer.Option(
                          "--operator", help="代企业录入的工作人员姓名（记入台账）")] = None,
                      consult: Consult = False, at: At = None, wait: Wait = 15) -> None:
    """企业反映堵点/卡点（方案四(二)）：代企业录入其电话等方式反映的问题，由承办单位解决（item unblock）。"""
    _item_request("report_issue", project, item, by, operator, consult, at, wait, reason=reason)


@item_app.command("unblock")
def item_unblock(project: Project, item: Item, by: By, operator: Operator = None, consult: Consult = False,
                 at: At = None, wait: Wait = 15,
                 note: Annotated[str | None, typer.Option(help="如何解决的")] = None) -> None:
    """解除堵点/卡点（承办单位或须解决的单位）。"""
    _item_request("unblock", project, item, by, operator, consult, at, wait, note=note)


@item_app.command("suspend")
def item_suspend(project: Project, item: Item, by: By, reason: Annotated[str, typer.Option(help="等待企业补正的内容")],
                 operator: Operator = None, consult: Consult = False, at: At = None, wait: Wait = 15) -> None:
    """中止办理，等待企业补正材料（计时暂停）。"""
    _item_request("suspend", project, item, by, operator, consult, at, wait, reason=reason)


@item_app.command("resume")
def item_resume(project: Project, item: Item, by: By, operator: Operator = None, consult: Consult = False,
                at: At = None, wait: Wait = 15, note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """企业补正后恢复办理（继续计时）。"""
    _item_request("resume", project, item, by, operator, consult, at, wait, note=note)


@item_app.command("complete")
def item_complete(project: Project, item: Item, by: By, operator: Operator = None, consult: Consult = False,
                  at: At = None, wait: Wait = 15, note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """办结事项。"""
    _item_request("complete", project, item, by, operator, consult, at, wait, note=note)


@item_app.command("deliver")
def item_deliver(project: Project, item: Item, by: By,
                 result: Annotated[list[str], typer.Option(help="移交的审批结果（可重复），如证照名称及文号")],
                 operator: Operator = None, consult: Consult = False, at: At = None, wait: Wait = 15,
                 note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """向企业一次性完整移交审批结果。"""
    _item_request("deliver", project, item, by, operator, consult, at, wait, results=tuple(result), note=note)


@task_order_app.command("issue")
def task_order_issue(project: Project, item: Item, by: By, operator: Operator = None, consult: Consult = False,
                     at: At = None, wait: Wait = 15,
                     note: Annotated[str | None, typer.Option(help="任务要求")] = None) -> None:
    """经济发展招商服务局下发“专业跑腿”服务任务单（事项具备办理条件后）。"""
    _item_request("issue", project, item, by, operator, consult, at, wait, note=note)


@task_order_app.command("accept")
def task_order_accept(project: Project, item: Item, by: By,
                      specialist: Annotated[str, typer.Option(help="服务专员姓名")],
                      phone: Annotated[str, typer.Option(help="服务专员电话")],
                      operator: Operator = None, consult: Consult = False, at: At = None, wait: Wait = 15) -> None:
    """政联公司接收任务单并指定服务专员。"""
    _item_request("accept_order", project, item, by, operator, consult, at, wait, specialist_name=specialist,
                  specialist_phone=phone)


@app.command()
def assess(project: Project, provider: Annotated[str, typer.Option(help="被测评的服务单位（单位编码）")],
           rater: Annotated[str, typer.Option(help="评价人类别：enterprise（服务对象）或 recruiting_unit（项目招引单位）")],
           by: Annotated[str, typer.Option("--by", help="提交人：企业的统一社会信用代码，或招引单位编码")],
           score: Annotated[list[str], typer.Option(help="指标得分 指标编码=分数，每个指标一次（见 evaluation.yaml）")],
           year: Annotated[int | None, typer.Option(help="测评年度（默认今年）")] = None,
           comment: Annotated[str | None, typer.Option(help="评价意见")] = None,
           operator: Operator = None, at: At = None, wait: Wait = 15) -> None:
    """提交综合测评（方案五(六)）：按问卷逐项打分；低于差评线的须由服务单位限期整改。"""
    from services.common.messages import SubmitAssessment
    from services.evaluation.ledger import local_day

    if rater not in ("enterprise", "recruiting_unit"):
        _fail("--rater 只能是 enterprise 或 recruiting_unit")
    scores: dict[str, float] = {}
    for pair in score:
        code, sep, text = pair.partition("=")
        try:
            scores[code] = float(text)
        except ValueError:
            sep = ""
        if not sep:
            _fail(f"--score 需写成 指标编码=分数，而不是 {pair!r}")
    moment = _when(at)
    command = _submit(SubmitAssessment, wait, f"对 {provider} 的测评（{project}）", project_code=project,
                      provider=provider, rater=rater, requested_by=by, operator=operator, occurred_at=moment,
                      year=year or local_day(moment).year, scores=scores, comment=comment)
    typer.echo(f"测评编号 {command.request_id}")
    if wait > 0:
        stored = asyncio.run(_assessment(command.request_id))
        if stored is not None and stored.bad:
            typer.echo(f"测评总分 {stored.total:g}，低于差评线：{provider} 须于 {stored.rectify_by} 前整改"
                       f"（zeroerrand rectify {command.request_id} --by {provider} --note ...）")
        elif stored is not None:
            typer.echo(f"测评总分 {stored.total:g}")


async def _assessment(assessment_id: str) -> Any:
    from services.common.storage import store_session
    from services.evaluation.repository import COLLECTIONS, MongoLedgerRepository

    async with store_session(collections=COLLECTIONS) as store:
        return await MongoLedgerRepository(store).assessment(assessment_id)


@app.command()
def rectify(assessment_id: Annotated[str, typer.Argument(help="差评的测评编号（assess 命令输出的测评编号）")],
            by: Annotated[str, typer.Option("--by", help="整改的服务单位（单位编码）")],
            note: Annotated[str, typer.Option(help="整改说明")], operator: Operator = None, at: At = None,
            wait: Wait = 15) -> None:
    """服务单位提交差评整改说明，关闭整改事项。"""
    from services.common.messages import RectifyAssessment

    _submit(RectifyAssessment, wait, f"测评 {assessment_id} 的整改说明", assessment_id=assessment_id, requested_by=by,
            operator=operator, note=note, occurred_at=_when(at))


@app.command()
def sweep(today: Annotated[str | None, typer.Option(help="按哪一天计算（YYYY-MM-DD，默认今天）")] = None) -> None:
    """立即检查一遍超时事项（首问响应与法定时限），发出预警/黄牌/红牌（评价服务也会定时检查）。"""
    from datetime import UTC, datetime

    from services.common.bus import BrokerPublisher, make_broker
    from services.common.settings import EvaluationSettings
    from services.common.storage import store_session
    from services.common.topology import declare_topology
    from services.evaluation import handlers
    from services.evaluation.app import ledger_on, read_rules
    from services.evaluation.ledger import CLOCK_NAMES_ZH, local_day
    from services.evaluation.repository import COLLECTIONS

    now = datetime.now(UTC)
    day = _day(today) if today else local_day(now)
    if day > local_day(now):
        _fail(f"--today {day} 晚于今天：超时提醒会真实发给各单位，只能按今天或以前计算；"
              f"要预览以后的时钟，请用 zeroerrand ledger show 项目编码 --today {day}")

    try:
        rules = read_rules(EvaluationSettings().rules_dir)
    except RulesError as exc:
        _fail([f"规则文件有 {len(exc.problems)} 处错误："] + [f"  {p}" for p in exc.problems])

    async def run() -> list[Any]:
        broker = make_broker(BrokerSettings())
        async with store_session(collections=COLLECTIONS) as store, broker:
            await broker.connect()
            await declare_topology(broker)
            return await handlers.sweep(ledger_on(store, BrokerPublisher(broker), rules), day, now)

    found = asyncio.run(run())
    typer.echo(f"按 {day} 计算，发出 {len(found)} 条超时提醒")
    for event in found:
        typer.echo(f"  {event.project_code}/{event.item_code} {CLOCK_NAMES_ZH[event.clock]}"
                   f"{OVERDUE_LEVEL_NAMES_ZH[event.level]}：已用 {event.working_days_used}/{event.time_limit_days} "
                   f"个工作日，到期日 {event.due_on}")


@ledger_app.command("show")
def ledger_show(project: Project,
                today: Annotated[str | None, typer.Option(help="按哪一天计算已用工作日（默认今天）")] = None,
                as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False) -> None:
    """项目台账：每个事项的阶段、服务方式、承办单位、状态、等待的前置事项、两个时钟（首问响应、法定时限）、
    任务单、堵点及须由谁解决、超时预警。"""
    from datetime import UTC, datetime

    from services.common.settings import EvaluationSettings
    from services.common.storage import store_session
    from services.evaluation.ledger import CLOCK_NAMES_ZH, local_day
    from services.evaluation.repository import COLLECTIONS, MongoLedgerRepository
    from services.evaluation.scoring import load_config
    from services.evaluation.views import ViewContext, project_progress
    from services.evaluation.working_days import WorkingCalendar

    day = _day(today) if today else local_day(datetime.now(UTC))
    calendar = WorkingCalendar()
    config = load_config(EvaluationSettings().rules_dir)
    book = _book(None)
    ctx = ViewContext(unit_names={code: unit.short_name for code, unit in book.units.items()}, calendar=calendar,
                      service_response_days=config.service_response_days, today=day)

    async def load() -> Any:
        async with store_session(collections=COLLECTIONS) as store:
            return await project_progress(MongoLedgerRepository(store), ctx, project)

    progress = asyncio.run(load())
    if progress is None:
        _fail(f"台账中没有项目 {project}")
    head = progress.project
    rows = [{
        "item": r.item_code, "request": r.request.value, "name": r.item_name, "stage": r.stage_name, "mode": r.mode_name,
        "unit": r.responsible_unit_name, "state": r.state_name, "waiting_for": list(r.waiting_for),
        "clocks": {c.clock: {"name": c.name, "used": c.used, "limit": c.limit, "due": c.due.isoformat(),
                             "running": c.running, "late": c.late} for c in r.clocks},
        "task_order": None if r.task_order is None else {
            "number": r.task_order.number, "state": r.task_order.state, "automatic": r.task_order.automatic,
            "specialist": r.task_order.specialist_name, "phone": r.task_order.specialist_phone},
        "task_order_required": r.task_order_required,
        "overdue": list(r.overdue),
        "blockers": [{"reason": b.reason, "resolver": b.resolver_name} for b in r.blockers],
        "late_records": r.late_records} for r in progress.items]
    if as_json:
        typer.echo(_dump({"project": head.model_dump(mode="json"), "items": rows}))
        return
    delivered_text = "已全部移交" if head.delivered_at else "办理中"
    typer.echo(f"项目 {project}（{head.name}）服务对象：{head.enterprise}；签约 {head.signed_on}；{delivered_text}")
    order_states = {"issued": "已下发，待接收", "accepted": "已接收", "closed": "已办结"}
    for r in rows:
        parts = [f"{r['stage']:<8}", f"{r['item']} {r['name']}{'（仅咨询）' if r['request'] == 'consult' else ''}",
                 r["mode"], r["unit"], r["state"]]
        if r["waiting_for"]:
            parts.append("等待 " + "、".join(r["waiting_for"]) + " 办结移交")
        for clock in r["clocks"].values():
            state = "计时中" if clock["running"] else "已停止"
            parts.append(f"{clock['name']} 已用 {clock['used']}/{clock['limit']} 工作日（{state}），到期 {clock['due']}"
                         + ("，超时" if clock["late"] else ""))
        if r["task_order"]:
            t = r["task_order"]
            who = f"，服务专员 {t['specialist']}（{t['phone']}）" if t["specialist"] else ""
            parts.append(f"任务单 {t['number']} {order_states[t['state']]}{'（自动下发）' if t['automatic'] else ''}{who}")
        elif r["task_order_required"] and not r["waiting_for"]:
            parts.append("任务单待经济发展招商服务局下发")
        if r["overdue"]:
            parts.append("【" + "、".join(CLOCK_NAMES_ZH[x.split(':')[0]] + OVERDUE_LEVEL_NAMES_ZH[x.split(':')[1]]
                                         for x in r["overdue"]) + "】")
        parts += [f"堵点：{b['reason']}（须由{b['resolver']}解决）" for b in r["blockers"]]
        if r["late_records"]:
            parts.append(f"补录 {r['late_records']} 条")
        typer.echo("\t".join(parts))
    for warning in calendar.warnings:
        typer.echo(f"注意：{warning}", err=True)


@ledger_app.command("requests")
def ledger_requests(limit: Annotated[int, typer.Option(help="最多显示条数")] = 50) -> None:
    """被台账拒绝的请求及原因（首问负责、状态不符、测评不合规等）。"""
    from services.common.storage import store_session
    from services.evaluation.repository import COLLECTIONS, MongoLedgerRepository

    async def load() -> list[Any]:
        async with store_session(collections=COLLECTIONS) as store:
            return await MongoLedgerRepository(store).refused(limit)

    found = asyncio.run(load())
    typer.echo(f"共 {len(found)} 条被拒绝的请求")
    for outcome in found:
        typer.echo(f"{outcome.recorded_at.astimezone(LOCAL):%Y-%m-%d %H:%M}  {outcome.request_type:<22} {outcome.requested_by}  "
                   f"{outcome.request_id}：{outcome.reason}")


@app.command()
def report(year: Annotated[int, typer.Option(help="评价年度")],
           evaluator: Annotated[str | None, typer.Option(
               help="评价单位：gov_service_bureau（帮办代办、联审联批）或 econ_dev_bureau（专业跑腿）；默认全部")] = None,
           out: Annotated[Path | None, typer.Option(help="报告目录（默认 reports/<年度>[-<评价单位>]）")] = None,
           today: Annotated[str | None, typer.Option(help="按哪一天判断未办结事项是否超时（默认今天）")] = None) -> None:
    """年度综合评价：每个服务单位、每种服务方式的综合测评得分（70 分合格）、未评价单位、退出/整改名单、
    评价意见，台账数据作参考；图表（HTML）与 CSV。"""
    from datetime import UTC, datetime

    from services.common.settings import EvaluationSettings
    from services.common.storage import store_session
    from services.evaluation.ledger import local_day
    from services.evaluation.report import summary_table, write_report
    from services.evaluation.repository import COLLECTIONS, MongoLedgerRepository
    from services.evaluation.scoring import evaluate, load_config
    from services.evaluation.working_days import WorkingCalendar

    if evaluator not in (None, "gov_service_bureau", "econ_dev_bureau"):
        _fail("--evaluator 只能是 gov_service_bureau 或 econ_dev_bureau（政策五(六)）")
    book = _book(None)
    try:
        config = load_config(EvaluationSettings().rules_dir)
    except RulesError as exc:
        _fail([f"评价规则文件有 {len(exc.problems)} 处错误："] + [f"  {p}" for p in exc.problems])

    async def load() -> tuple[list[Any], list[Any]]:
        async with store_session(collections=COLLECTIONS) as store:
            repo = MongoLedgerRepository(store)
            assessments = await repo.assessments(year)
            return await repo.year_items(year, [a.project_code for a in assessments]), assessments

    items, assessments = asyncio.run(load())
    now = datetime.now(UTC)
    day = _day(today) if today else local_day(now)
    result = evaluate(year, items, assessments, config, book.units, WorkingCalendar(), day, now, evaluator=evaluator)
    directory = out or Path("reports") / (f"{year}-{evaluator}" if evaluator else str(year))
    written = write_report(result, directory)
    typer.echo(summary_table(result))
    typer.echo("报告文件：" + "、".join(str(p) for p in written))


users_app = typer.Typer(help="服务台账号 / console accounts.", no_args_is_help=True)
app.add_typer(users_app, name="users")


def _password(password_stdin: bool) -> str:
    import sys

    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("密码", hide_input=True, confirmation_prompt="再输入一次"))


def _accounts_do(action: Any) -> Any:
    from services.common.storage import store_session
    from services.console.accounts import COLLECTIONS, AccountError, Accounts

    async def run() -> Any:
        async with store_session(collections=COLLECTIONS) as store:
            return await action(Accounts(store))

    try:
        return asyncio.run(run())
    except AccountError as exc:
        _fail(str(exc))


PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="从标准输入读取密码（一行），不提示")]


@users_app.command("add")
def users_add(username: Annotated[str, typer.Argument(help="用户名（小写字母开头，3–40 个字符）")],
              unit: Annotated[str, typer.Option(help="所属单位编码（units.yaml）")],
              role: Annotated[str, typer.Option(help="gov_service（政务服务局）| econ_dev（经发局）| department（承办部门）"
                                                     "| service_company（政联公司）| recruiting（招引单位）")],
              name: Annotated[str, typer.Option(help="姓名（记入台账的操作人）")],
              password_stdin: PasswordStdin = False) -> None:
    """开设服务台账号：一人一号，属于一个单位、一种角色；密码以 Argon2id 散列保存。"""
    from services.console.accounts import ROLE_NAMES_ZH, Role

    try:
        chosen = Role(role)
    except ValueError:
        _fail(f"--role 只能是 {'、'.join(r.value for r in Role)}")
    book = _book(None)
    password = _password(password_stdin)
    account = _accounts_do(lambda accounts: accounts.add(username, name, unit, chosen, password, book.units))
    typer.echo(f"已开设账号 {account.username}：{account.display_name}，{book.units[unit].short_name}，"
               f"角色 {ROLE_NAMES_ZH[account.role]}")


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument(help="用户名")]) -> None:
    """停用账号：立即失效，已登录的会话也在下一次请求时结束。"""
    _accounts_do(lambda accounts: accounts.set_active(username, False))
    typer.echo(f"已停用账号 {username}")


@users_app.command("reset")
def users_reset(username: Annotated[str, typer.Argument(help="用户名")], password_stdin: PasswordStdin = False) -> None:
    """重置密码（并重新启用）：此前的会话全部失效。"""
    password = _password(password_stdin)
    _accounts_do(lambda accounts: accounts.reset(username, password))
    typer.echo(f"已重置账号 {username} 的密码")


@users_app.command("list")
def users_list() -> None:
    """列出服务台账号。"""
    from services.console.accounts import ROLE_NAMES_ZH

    found = _accounts_do(lambda accounts: accounts.list())
    typer.echo(f"共 {len(found)} 个账号")
    for a in found:
        typer.echo(f"{a.username}\t{a.display_name}\t{a.unit}\t{ROLE_NAMES_ZH[a.role]}\t{'启用' if a.active else '停用'}")


def main() -> None:
    from services.common.settings import BrokerUnavailable, SettingsError
    from services.common.storage import StoreSchemaError, StoreUnavailable

    try:
        app(prog_name="zeroerrand")
    except (StoreUnavailable, StoreSchemaError, SettingsError, BrokerUnavailable) as exc:  # said in a line, not a traceback
        typer.echo(str(exc), err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()


from services.demo.command import demo as _demo  # noqa: E402

app.command("demo")(_demo)
