"""What the commands share: failing with a message, the rule book, dates and times as typed, and
sending one request to the ledger and waiting for what became of it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from services.common.settings import BrokerSettings, RouterSettings, mask_url, mask_urls_in

if TYPE_CHECKING:
    from datetime import date, datetime

    from services.common.rule_files import RuleBook
    from services.common.yaml_files import RulesError

RulesDir = Annotated[Path | None, typer.Option("--rules", help="规则目录（默认：ZEROERRAND_ROUTER_RULES_DIR 或仓库的 rules/）")]
Project = Annotated[str, typer.Argument(help="项目编码（一项一码）")]
Operator = Annotated[str | None, typer.Option("--operator", help="代该单位操作的工作人员姓名（记入台账）")]
At = Annotated[str | None, typer.Option("--at", help="发生时间（ISO 格式，补录时用；默认现在）")]
Wait = Annotated[float, typer.Option("--wait", help="等待台账处理结果的秒数（0：不等待）")]


def fail(lines: list[str] | str, code: int = 1) -> NoReturn:
    for line in [lines] if isinstance(lines, str) else lines:
        typer.echo(line, err=True)
    raise typer.Exit(code)


def fail_problems(files: str, exc: RulesError, after: str = "") -> NoReturn:
    """``{files}有 N 处错误{after}：`` and each problem on a line of its own."""
    fail([f"{files}有 {len(exc.problems)} 处错误{after}："] + [f"  {p}" for p in exc.problems])


def rules_dir(rules: Path | None) -> Path:
    return rules or RouterSettings().rules_dir


def book(rules: Path | None) -> RuleBook:
    from services.common.rule_files import load_rulebook
    from services.common.yaml_files import RulesError

    try:
        return load_rulebook(rules_dir(rules))
    except RulesError as exc:
        fail_problems("规则文件", exc)


def publish_failed(exc: BaseException) -> NoReturn:
    """Publishing failed: says where to (the broker's URL, its password masked) and why."""
    url = BrokerSettings().amqp_url
    fail(f"发布失败（RabbitMQ {mask_url(url)}）：{mask_urls_in(str(exc) or repr(exc))}")


def dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)


def day(text: str) -> date:
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"不是日期：{text!r}（应写成 YYYY-MM-DD，如 2026-10-09）")


def when(at: str | None) -> datetime:
    from datetime import UTC, datetime

    if at is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        fail(f"--at 不是 ISO 时间：{at!r}（例如 2026-10-09T10:30:00+08:00）")
    if moment.tzinfo is None:
        from services.evaluation.ledger import LOCAL

        moment = moment.replace(tzinfo=LOCAL)
    return moment


def submit(model: Any, wait: float, describe: str, **fields: Any) -> Any:
    """Sends one request to the ledger and, unless ``wait`` is 0, prints what became of it."""
    import uuid
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from services.common.bus import publish_once, request_out

    fields.setdefault("occurred_at", datetime.now(UTC))
    try:
        command = model(request_id=str(uuid.uuid4()), requested_at=datetime.now(UTC), **fields)
    except ValidationError as exc:  # each problem with its field, in the models' own (Chinese) words
        fail("请求内容有误，未提交：" + "；".join(
            f"{'.'.join(str(p) for p in e['loc']) or '请求'}：{str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors()))
    try:
        asyncio.run(publish_once([request_out(command)]))
    except Exception as exc:
        publish_failed(exc)
    typer.echo(f"已提交{describe}，请求编号 {command.request_id}")
    if wait > 0:
        outcome = asyncio.run(_await_outcome(command.request_id, wait))
        if outcome is None:
            fail(f"{wait:g} 秒内台账未处理该请求（评价服务是否在运行？）；稍后用 zeroerrand ledger show 查看是否已生效，"
                 "被拒绝的见 zeroerrand ledger requests", 3)
        elif outcome.status == "refused":
            fail(f"台账拒绝了该请求：{outcome.reason}")
        else:
            typer.echo("台账已接受。")
    return command


async def _await_outcome(request_id: str, wait: float) -> Any:
    from services.evaluation.views import request_outcome

    return await on_ledger(lambda repo: request_outcome(repo, request_id, wait, poll_s=0.2))


async def on_ledger(read: Any) -> Any:
    """``read(repository)`` on a store session of the ledger's collections."""
    from services.common.storage import store_session
    from services.evaluation.repository import COLLECTIONS, MongoLedgerRepository

    async with store_session(collections=COLLECTIONS) as store:
        return await read(MongoLedgerRepository(store))
