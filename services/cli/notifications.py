"""``notifications list``: the notifications the notifier stored, and whether they arrived."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from services.cli._common import dump, fail

notifications_app = typer.Typer(help="通知记录 / stored notifications.", no_args_is_help=True)

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
    from services.evaluation.ledger import LOCAL
    from services.notifier.repository import COLLECTIONS, NotifierRepository

    async def query() -> list[dict[str, Any]]:
        async with store_session(collections=COLLECTIONS) as store:
            return await NotifierRepository(store).find(project=project, recipient=recipient, status=status,
                                                        limit=limit)

    try:
        found = asyncio.run(query())
    except StoreUnavailable as exc:
        fail(str(exc))
    if as_json:
        typer.echo(dump(found))
        return
    more = f"（只显示前 {limit} 条，可能还有更多：用 --limit 显示更多）" if len(found) >= limit else ""
    typer.echo(f"共 {len(found)} 条通知{more}")
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
