"""``sign``: an agreement file becomes an ``agreement.signed`` message, or with ``--amend`` (a 补充协议)
an ``agreement.amended`` one; then, unless ``--wait 0``, what the router (and for an amendment the
ledger) made of it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli._common import fail, fail_problems, publish_failed


def sign(file: Annotated[Path, typer.Argument(help="协议文件（YAML 或 JSON），格式见 examples/agreements/README.md")],
         backfill: Annotated[bool, typer.Option("--backfill", help=(
             "补录：以往签订的协议连同其后的办理情况一并补录，事项自签约日起算（只是录入晚了则不要用）"))] = False,
         amend: Annotated[bool, typer.Option("--amend", help=(
             "补充协议：同一项目（项目编码相同）的补充协议，文件中为变更后的完整审批策划；只分派新增事项，"
             "撤回删除且尚未受理的事项，并一次性告知企业变化"))] = False,
         wait: Annotated[float, typer.Option(help="等待路由服务（补充协议还有台账）答复的秒数；0 只发布不等待")] = 15) -> None:
    """签约：发布一条 agreement.signed 消息（持久化、经 RabbitMQ 确认），启动“企业零跑腿”服务；--amend 发布补充协议。"""
    from services.common.agreement_files import amended_event, load_agreement, signed_event
    from services.common.bus import Outgoing, publish_once
    from services.common.domain import NEW_AREA_TIME
    from services.common.messages import AgreementAmended, AgreementSigned
    from services.common.settings import RouterSettings
    from services.common.topology import AGREEMENT_AMENDED, AGREEMENT_SIGNED, AGREEMENTS
    from services.common.yaml_files import RulesError

    if amend and backfill:
        fail("--amend 与 --backfill 不能同时使用：补充协议不补录")
    event: AgreementSigned | AgreementAmended
    try:
        loaded = load_agreement(file)
        limit = RouterSettings().max_agreement_bytes
        event = amended_event(file, loaded, limit) if amend else signed_event(file, loaded, limit)
        if backfill and isinstance(event, AgreementSigned):
            event = event.model_copy(update={"backfill": True})
            today = datetime.now(NEW_AREA_TIME).date()
            if event.signed_on >= today:
                fail(f"{file}：签约日期 {event.signed_on} 不早于今天（{today}），不是以往的协议，不能补录（--backfill）；"
                     "请去掉 --backfill 正常签约")
    except RulesError as exc:
        fail_problems("协议文件", exc)
    published_at = datetime.now(UTC)
    key = AGREEMENT_AMENDED if amend else AGREEMENT_SIGNED
    try:
        asyncio.run(publish_once([Outgoing(AGREEMENTS, key, event, event.event_id, event.type)]))
    except Exception as exc:
        publish_failed(exc)
    what = "补充协议" if amend else "协议"
    typer.echo(f"已{'提交' if amend else '签约并发布'}：{what} {event.agreement_id}，项目 {event.project.code}"
               f"（{event.project.name}），审批策划 {len(event.plan)} 项；event_id {event.event_id}"
               + (f"；补录，事项自签约日 {event.signed_on} 起算" if backfill else ""))
    if wait > 0:
        asyncio.run(_report(event, published_at, wait))


async def _report(event: Any, published_at: datetime, wait: float) -> None:
    """What became of the agreement: taken (as which revision), or refused with the reason; for a
    补充协议, what the ledger added, withdrew and kept."""
    from services.common.storage import store_session
    from services.evaluation.repository import COLLECTIONS as LEDGER
    from services.evaluation.repository import MongoLedgerRepository
    from services.router.registry import COLLECTIONS, MongoAgreementRegistry, fingerprint

    print_ = fingerprint(event)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    async with store_session(collections=(*COLLECTIONS, *LEDGER)) as store:
        async def opened() -> Any:
            return store

        registry = MongoAgreementRegistry(opened)
        while True:
            taken = await registry.agreement(event.agreement_id)
            if taken is not None and taken.fingerprint == print_:
                break
            refused = await registry.refusal(event.agreement_id, print_)
            if refused is not None and refused.recorded_at >= published_at:
                fail(["路由服务拒绝了该" + ("补充协议" if event.type == "agreement.amended" else "协议")
                      + f"（{refused.reason_code}），未分派任何事项：", *refused.reasons])
            if loop.time() > deadline:
                fail(f"{wait:g} 秒内路由服务未答复（是否在运行？）；协议在队列中等待处理，稍后用 zeroerrand ledger show "
                     f"{event.project.code} 查看", 3)
            await asyncio.sleep(0.2)
        if taken.revision == 0:
            typer.echo(f"路由服务已受理：项目 {taken.project_code} 的“企业零跑腿”服务已启动（审批策划 {len(taken.plan)} 项）。")
            return
        typer.echo(f"路由服务已受理：项目 {taken.project_code} 第 {taken.revision} 次变更，审批策划现为 {len(taken.plan)} 项。")
        ledger = MongoLedgerRepository(store)
        while True:
            done = next((a for a in await ledger.amendments(taken.project_code) if a.agreement_id == event.agreement_id),
                        None)
            if done is not None:
                break
            if loop.time() > deadline:
                fail(f"{wait:g} 秒内台账未处理该补充协议（评价服务是否在运行？）；稍后用 zeroerrand ledger show "
                     f"{taken.project_code} 查看", 3)
            await asyncio.sleep(0.2)
    from services.common.messages import ProjectAmended

    told = ProjectAmended.model_validate(done.announced)

    def names(lines: Any) -> str:
        return "、".join(f"{line.item_code}{'（仅咨询）' if line.request.value == 'consult' else ''}" for line in lines) or "无"

    typer.echo(f"台账已更新：新增 {len(told.added)} 项（{names(told.added)}），撤回 {len(told.withdrawn)} 项"
               f"（{names(told.withdrawn)}），审批策划共 {told.items_planned} 项"
               + (f"；招引单位 {told.previous_recruiting_unit} → {told.recruiting_unit}"
                  if told.recruiting_unit != told.previous_recruiting_unit else ""))
    for kept in told.kept:
        typer.echo(f"不能撤回：{kept.reason}")
    if told.kept:
        raise typer.Exit(4)
