"""``zeroerrand``: the operator's entry point (run services, sign agreements, check and explain rules)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from services.common.domain import MODE_NAMES_ZH, OVERDUE_LEVEL_NAMES_ZH, STAGE_NAMES_ZH, Request, Unroutable
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
def evaluation() -> None:
    """运行评价服务：维护年度综合评价台账（项目、事项状态、时限、堵点、评价），定时发出超时预警。"""
    from services.evaluation.app import create_evaluation

    _run_apps(create_evaluation().app)


@app.command()
def up() -> None:
    """一条命令运行全部服务（路由 + 通知 + 评价），未设置 MONGODB_URL 时使用内置存储；Ctrl-C 停止。"""
    from services.evaluation.app import create_evaluation
    from services.notifier.app import create_notifier
    from services.router.app import create_router

    _run_apps(create_router().app, create_notifier().app, create_evaluation().app)


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


# -- evaluation: progress reports, ratings, sweep, ledger, annual report ---------------------------

item_app = typer.Typer(help="为没有自建系统的单位报告事项进度 / report an item's progress.", no_args_is_help=True)
app.add_typer(item_app, name="item")
ledger_app = typer.Typer(help="年度综合评价台账 / the ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")

Project = Annotated[str, typer.Argument(help="项目编码（一项一码）")]
Item = Annotated[str, typer.Argument(help="事项编码，如 EP-03")]
By = Annotated[str | None, typer.Option("--by", help="报告单位编码（默认：台账中的承办单位）")]
At = Annotated[str | None, typer.Option("--at", help="发生时间（ISO 格式，补录时用；默认现在）")]


def _publish_events(events: list[Any]) -> None:
    from services.common.bus import BrokerPublisher, event_out, make_broker
    from services.common.topology import declare_topology

    async def publish() -> None:
        broker = make_broker(BrokerSettings().amqp_url)
        async with broker:
            await broker.connect()
            await declare_topology(broker)
            await BrokerPublisher(broker).publish_all([event_out(e) for e in events])

    try:
        asyncio.run(publish())
    except Exception as exc:
        _fail(f"发布失败（RabbitMQ {BrokerSettings().amqp_url}）：{exc}")


def _ledger_item(project: str, item: str) -> dict[str, Any] | None:
    from services.common.storage import StoreUnavailable, store_session
    from services.evaluation.repository import COLLECTIONS, LedgerRepository, item_id

    async def find() -> dict[str, Any] | None:
        async with store_session(collections=COLLECTIONS) as store:
            return await LedgerRepository(store).items.find_one({"_id": item_id(project, item)})

    try:
        return asyncio.run(find())
    except StoreUnavailable as exc:
        _fail(str(exc))
        return None


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


def _report_item(kind: str, project: str, item: str, by: str | None, at: str | None, **fields: Any) -> None:
    import uuid

    from services.common import messages as m

    model = {"accept": m.ItemAccepted, "progress": m.ItemProgress, "block": m.ItemBlocked, "unblock": m.ItemUnblocked,
             "suspend": m.ItemSuspended, "resume": m.ItemResumed, "complete": m.ItemCompleted,
             "deliver": m.ItemDelivered}[kind]
    if by is None:
        found = _ledger_item(project, item)
        if found is None:
            _fail(f"台账中没有事项 {project}/{item}；请核对编码，或用 --by 指定报告单位")
        by = str(found["responsible_unit"]) if found else None
    moment = _when(at)
    from datetime import UTC, datetime

    try:
        event = model(event_id=str(uuid.uuid4()), occurred_at=moment, recorded_at=datetime.now(UTC),
                      project_code=project, item_code=item, reported_by=by, **fields)
    except Exception as exc:
        _fail(f"报告内容不完整：{exc}")
    _publish_events([event])
    typer.echo(f"已报告：{project}/{item} {event.type}（{by}），event_id {event.event_id}")


@item_app.command("accept")
def item_accept(project: Project, item: Item, by: By = None, at: At = None,
                note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """受理事项。"""
    _report_item("accept", project, item, by, at, note=note)


@item_app.command("progress")
def item_progress(project: Project, item: Item, note: Annotated[str, typer.Option(help="进展情况")],
                  by: By = None, at: At = None) -> None:
    """报告办理进度。"""
    _report_item("progress", project, item, by, at, note=note)


@item_app.command("block")
def item_block(project: Project, item: Item, reason: Annotated[str, typer.Option(help="堵点/卡点成因")],
               resolver: Annotated[str, typer.Option(help="须由哪个单位解决（单位编码）")],
               by: By = None, at: At = None) -> None:
    """报告堵点/卡点：原因与须由谁解决。"""
    _report_item("block", project, item, by, at, reason=reason, resolver=resolver)


@item_app.command("unblock")
def item_unblock(project: Project, item: Item, by: By = None, at: At = None,
                 note: Annotated[str | None, typer.Option(help="如何解决的")] = None) -> None:
    """解除堵点/卡点。"""
    _report_item("unblock", project, item, by, at, note=note)


@item_app.command("suspend")
def item_suspend(project: Project, item: Item, reason: Annotated[str, typer.Option(help="等待企业补正的内容")],
                 by: By = None, at: At = None) -> None:
    """中止办理，等待企业补正材料（时限暂停计算）。"""
    _report_item("suspend", project, item, by, at, reason=reason)


@item_app.command("resume")
def item_resume(project: Project, item: Item, by: By = None, at: At = None,
                note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """企业补正后恢复办理（时限继续计算）。"""
    _report_item("resume", project, item, by, at, note=note)


@item_app.command("complete")
def item_complete(project: Project, item: Item, by: By = None, at: At = None,
                  note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """办结事项。"""
    _report_item("complete", project, item, by, at, note=note)


@item_app.command("deliver")
def item_deliver(project: Project, item: Item,
                 result: Annotated[list[str], typer.Option(help="移交的审批结果（可重复），如证照名称及文号")],
                 by: By = None, at: At = None, note: Annotated[str | None, typer.Option(help="备注")] = None) -> None:
    """向企业一次性完整移交审批结果。"""
    _report_item("deliver", project, item, by, at, results=tuple(result), note=note)


@app.command()
def rate(project: Project, provider: Annotated[str, typer.Option(help="被评价的服务单位（单位编码）")],
         by: Annotated[str, typer.Option("--by", help="评价人：enterprise（服务对象）或 recruiting_unit（项目招引单位）")],
         level: Annotated[str, typer.Option(help="非常满意 / 满意 / 基本满意 / 不满意 / 非常不满意")],
         comment: Annotated[str | None, typer.Option(help="评价意见")] = None, at: At = None) -> None:
    """提交“好差评”：差评（不满意及以下）会生成整改事项，须由服务单位整改后关闭。"""
    import uuid
    from datetime import UTC, datetime

    from services.common.messages import RatingSubmitted, Satisfaction

    if level not in {s.value for s in Satisfaction}:
        _fail(f"--level 只能是 {' / '.join(s.value for s in Satisfaction)}，而不是 {level!r}")
    if by not in ("enterprise", "recruiting_unit"):
        _fail("--by 只能是 enterprise 或 recruiting_unit")
    event = RatingSubmitted(event_id=str(uuid.uuid4()), occurred_at=_when(at), recorded_at=datetime.now(UTC),
                            project_code=project, provider=provider, rater=by,
                            level=Satisfaction(level), comment=comment)
    _publish_events([event])
    follow = "；这是差评，已生成整改事项：整改后请运行 zeroerrand rectify " + event.event_id if event.level.is_bad else ""
    typer.echo(f"已提交评价 {event.event_id}：{project} / {provider}：{level}{follow}")


@app.command()
def rectify(rating_id: Annotated[str, typer.Argument(help="差评的评价编号（rate 命令输出的 event_id）")],
            provider: Annotated[str, typer.Option(help="整改的服务单位（单位编码）")],
            note: Annotated[str, typer.Option(help="整改说明")], at: At = None) -> None:
    """服务单位关闭差评的整改事项。"""
    import uuid
    from datetime import UTC, datetime

    from services.common.messages import RatingRectified

    event = RatingRectified(event_id=str(uuid.uuid4()), occurred_at=_when(at), recorded_at=datetime.now(UTC),
                            rating_id=rating_id, provider=provider, note=note)
    _publish_events([event])
    typer.echo(f"已提交整改说明：评价 {rating_id}（{provider}）")


@app.command()
def sweep(today: Annotated[str | None, typer.Option(help="按哪一天计算（YYYY-MM-DD，默认今天）")] = None) -> None:
    """立即检查一遍超时事项，发出预警/黄牌/红牌（评价服务也会定时检查）。"""
    from datetime import UTC, date, datetime

    from services.common.bus import BrokerPublisher, make_broker
    from services.common.storage import store_session
    from services.common.topology import declare_topology
    from services.evaluation.handlers import sweep_overdue
    from services.evaluation.repository import COLLECTIONS, LedgerRepository, local_day
    from services.evaluation.working_days import WorkingCalendar

    now = datetime.now(UTC)
    day = date.fromisoformat(today) if today else local_day(now)

    async def run() -> list[Any]:
        broker = make_broker(BrokerSettings().amqp_url)
        async with store_session(collections=COLLECTIONS) as store, broker:
            await broker.connect()
            await declare_topology(broker)
            return await sweep_overdue(LedgerRepository(store), BrokerPublisher(broker), WorkingCalendar(), day, now)

    found = asyncio.run(run())
    typer.echo(f"按 {day} 计算，发出 {len(found)} 条超时提醒")
    for event in found:
        level = OVERDUE_LEVEL_NAMES_ZH[event.level]
        typer.echo(f"  {event.project_code}/{event.item_code} {level}：已用 {event.working_days_used}/"
                   f"{event.time_limit_days} 个工作日，到期日 {event.due_on}")


@ledger_app.command("show")
def ledger_show(project: Project,
                today: Annotated[str | None, typer.Option(help="按哪一天计算已用工作日（默认今天）")] = None,
                as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False) -> None:
    """项目台账：每个事项的阶段、服务方式、承办单位、状态、已用工作日/时限、堵点及须由谁解决、超时预警。"""
    from datetime import UTC, date, datetime

    from services.common.domain import MODE_NAMES_ZH, ServiceMode, Stage
    from services.common.storage import store_session
    from services.evaluation.ledger import STATE_NAMES_ZH, ItemState
    from services.evaluation.repository import COLLECTIONS, LedgerRepository, item_record, local_day
    from services.evaluation.working_days import WorkingCalendar

    async def load() -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        async with store_session(collections=COLLECTIONS) as store:
            ledger = LedgerRepository(store)
            return await ledger.project(project), await ledger.project_items(project)

    head, items = asyncio.run(load())
    if head is None:
        _fail(f"台账中没有项目 {project}")
    assert head is not None
    day = date.fromisoformat(today) if today else local_day(datetime.now(UTC))
    calendar = WorkingCalendar()
    book = _book(None)
    rows = []
    for doc in sorted(items, key=lambda d: (list(Stage).index(Stage(d["stage"])), d["item_code"])):
        record = item_record(doc)
        used = calendar.working_days_used(record.routed_on, record.finished_on or day, record.pauses)
        due = calendar.due_date(record.routed_on, record.time_limit_days, record.pauses, day)
        open_blockers = [b for b in doc["blockers"] if b["closed_at"] is None]
        rows.append({"item": doc["item_code"], "name": doc["item_name"], "stage": STAGE_NAMES_ZH[Stage(doc["stage"])],
                     "mode": MODE_NAMES_ZH[ServiceMode(doc["mode"])],
                     "unit": book.units[doc["responsible_unit"]].short_name if doc["responsible_unit"] in book.units
                     else doc["responsible_unit"],
                     "state": STATE_NAMES_ZH[ItemState(doc["state"])], "used": used, "limit": doc["time_limit_days"],
                     "due": due.isoformat(), "overdue": list(doc["overdue_sent"]),
                     "blockers": [{"reason": b["reason"], "resolver": book.units[b["resolver"]].short_name
                                   if b["resolver"] in book.units else b["resolver"]} for b in open_blockers],
                     "late_records": sum(1 for h in doc["history"] if h.get("late"))})
    if as_json:
        typer.echo(_dump({"project": head, "items": rows}))
        return
    delivered = "已全部移交" if head.get("delivered_at") else "办理中"
    typer.echo(f"项目 {project}（{head['name']}）服务对象：{head['enterprise']}；签约 {head['signed_on']}；{delivered}")
    for r in rows:
        flags = "、".join(OVERDUE_LEVEL_NAMES_ZH[x] for x in r["overdue"])
        blockers = "；".join(f"堵点：{b['reason']}（须由{b['resolver']}解决）" for b in r["blockers"])
        late = f"；补录 {r['late_records']} 条" if r["late_records"] else ""
        typer.echo(f"{r['stage']:<8}\t{r['item']} {r['name']}\t{r['mode']}\t{r['unit']}\t{r['state']}\t"
                   f"已用 {r['used']}/{r['limit']} 工作日，到期 {r['due']}"
                   f"{'  【' + flags + '】' if flags else ''}{'  ' + blockers if blockers else ''}{late}")
    for warning in calendar.warnings:
        typer.echo(f"注意：{warning}", err=True)


@app.command()
def report(year: Annotated[int, typer.Option(help="评价年度")],
           evaluator: Annotated[str | None, typer.Option(
               help="评价单位：gov_service_bureau（帮办代办、联审联批）或 econ_dev_bureau（专业跑腿）；默认全部")] = None,
           out: Annotated[Path | None, typer.Option(help="报告目录（默认 reports/<年度>[-<评价单位>]）")] = None,
           today: Annotated[str | None, typer.Option(help="按哪一天判断未办结事项是否超时（默认今天）")] = None) -> None:
    """年度综合评价：每个服务单位、每种服务方式的百分制得分（70 分合格），退出/整改名单，图表（HTML）与 CSV。"""
    from datetime import UTC, date, datetime

    from services.common.storage import store_session
    from services.evaluation.report import summary_table, write_report
    from services.evaluation.repository import COLLECTIONS, LedgerRepository, item_record, local_day, rating_record
    from services.evaluation.scoring import evaluate, load_config
    from services.evaluation.working_days import WorkingCalendar

    if evaluator not in (None, "gov_service_bureau", "econ_dev_bureau"):
        _fail("--evaluator 只能是 gov_service_bureau 或 econ_dev_bureau（政策五(六)）")
    from services.common.settings import EvaluationSettings

    book = _book(None)
    try:
        config = load_config(EvaluationSettings().rules_dir)
    except RulesError as exc:
        _fail([f"评价权重文件有 {len(exc.problems)} 处错误："] + [f"  {p}" for p in exc.problems])

    async def load() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with store_session(collections=COLLECTIONS) as store:
            ledger = LedgerRepository(store)
            return await ledger.all_items(), await ledger.all_ratings()

    item_docs, rating_docs = asyncio.run(load())
    now = datetime.now(UTC)
    day = date.fromisoformat(today) if today else local_day(now)
    records = [item_record(d) for d in item_docs]
    result = evaluate(year, records, [rating_record(d) for d in rating_docs], config, book.units, WorkingCalendar(), day, now,
                      evaluator=evaluator)
    directory = out or Path("reports") / (f"{year}-{evaluator}" if evaluator else str(year))
    written = write_report(result, directory)
    typer.echo(summary_table(result))
    typer.echo("报告文件：" + "、".join(str(p) for p in written))


def main() -> None:
    app(prog_name="zeroerrand")


if __name__ == "__main__":
    main()
