"""``sign``: an agreement file becomes an ``agreement.signed`` message."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from services.cli._common import fail, fail_problems, publish_failed


def sign(file: Annotated[Path, typer.Argument(help="协议文件（YAML 或 JSON），格式见 examples/agreements/README.md")],
         backfill: Annotated[bool, typer.Option("--backfill", help=(
             "补录：以往签订的协议连同其后的办理情况一并补录，事项自签约日起算（只是录入晚了则不要用）"))] = False) -> None:
    """签约：发布一条 agreement.signed 消息（持久化、经 RabbitMQ 确认），启动“企业零跑腿”服务。"""
    from services.common.agreement_files import load_agreement, signed_event
    from services.common.bus import Outgoing, publish_once
    from services.common.domain import NEW_AREA_TIME
    from services.common.settings import RouterSettings
    from services.common.topology import AGREEMENT_SIGNED, AGREEMENTS
    from services.common.yaml_files import RulesError

    try:
        event = signed_event(file, load_agreement(file), RouterSettings().max_agreement_bytes)
        if backfill:
            event = event.model_copy(update={"backfill": True})
            today = datetime.now(NEW_AREA_TIME).date()
            if event.signed_on >= today:
                fail(f"{file}：签约日期 {event.signed_on} 不早于今天（{today}），不是以往的协议，不能补录（--backfill）；"
                     "请去掉 --backfill 正常签约")
    except RulesError as exc:
        fail_problems("协议文件", exc)
    try:
        asyncio.run(publish_once([Outgoing(AGREEMENTS, AGREEMENT_SIGNED, event, event.event_id, event.type)]))
    except Exception as exc:
        publish_failed(exc)
    typer.echo(f"已签约并发布：协议 {event.agreement_id}，项目 {event.project.code}（{event.project.name}），"
               f"审批策划 {len(event.plan)} 项；event_id {event.event_id}"
               + (f"；补录，事项自签约日 {event.signed_on} 起算" if backfill else ""))
