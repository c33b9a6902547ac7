"""``dead-letters list`` / ``dead-letters replay``: the messages the consumers parked, and sending
chosen ones back to the queue they were parked from once their cause is fixed.

A consumer parks a message it will never handle as it is (``services.common.consuming.park``: an
invalid body, too large, an untrusted publisher, or failing for its content on every delivery) on
its queue's dead-letter queue ``<queue>.dead`` (``services.common.topology``), the body unchanged,
why in headers (``x-zeroerrand-error-kind``, ``x-zeroerrand-error``, ``x-zeroerrand-source-queue``,
``x-zeroerrand-publisher``) and the parking time as the AMQP timestamp. The broker dead-letters there
too, by its delivery limit (``x-death`` then says why and when).

Reading a dead-letter queue takes its messages without acknowledging them (``basic.get``); closing
the channel gives back those not replayed, so listing changes nothing. A replayed message is
published to its queue (the default exchange, routing key = the queue), persistent, mandatory and
confirmed, with its body, type, message id, content type, its own headers (the parking ones and
the broker's ``x-death`` / ``x-delivery-count`` removed) and its publisher as ``user_id``; it is
removed from the dead-letter queue only after the broker confirmed the copy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer

from services.cli._common import dump, fail

dead_letters_app = typer.Typer(help="停放（死信）的消息：查看与重放 / parked (dead-lettered) messages: list and replay.",
                               no_args_is_help=True)

QueueOption = Annotated[list[str] | None, typer.Option(
    "--queue", help="只看这个消费队列（可写全名 zeroerrand.notifier.events 或 notifier.events；可重复）")]
AsJson = Annotated[bool, typer.Option("--json", help="输出 JSON")]
GET_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Parked:
    """One parked message as the parking code (or the broker's dead-lettering) recorded it."""

    queue: str  # the consumer queue it was parked from (its dead-letter queue is queue + ".dead")
    message_id: str | None
    type: str | None
    kind: str
    reason: str
    parked_at: str | None
    publisher: str | None
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "message_id": self.message_id, "type": self.type, "kind": self.kind,
                "reason": self.reason, "parked_at": self.parked_at, "publisher": self.publisher, "bytes": self.size}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _when(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return _text(value)


def describe(queue: str, message: Any) -> Parked:
    """What ``message``, read from ``queue``'s dead-letter queue, says of itself."""
    from services.common.consuming import printable
    from services.common.topology import ERROR_HEADER, ERROR_KIND_HEADER, PUBLISHER_HEADER

    headers: Mapping[str, Any] = message.headers or {}
    kind = _text(headers.get(ERROR_KIND_HEADER))
    reason = _text(headers.get(ERROR_HEADER))
    parked_at = _when(message.timestamp)
    deaths = headers.get("x-death")
    if kind is None and isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        death = deaths[0]  # dead-lettered by the broker itself (its delivery limit)
        kind = f"broker:{_text(death.get('reason'))}"
        reason = (f"RabbitMQ 按投递上限（{_text(death.get('reason'))}）把消息从 {_text(death.get('queue'))} 转入死信队列，"
                  "处理它的进程未留下原因 / dead-lettered by the broker")
        parked_at = _when(death.get("time")) or parked_at
    publisher = _text(headers.get(PUBLISHER_HEADER)) or _text(message.user_id)
    return Parked(queue=queue, message_id=_text(message.message_id), type=_text(message.type), kind=kind or "unknown",
                  reason=printable(reason or "（未记录原因）"), parked_at=parked_at, publisher=publisher,
                  size=len(message.body))


def consumer_queues(names: Sequence[str] | None) -> list[str]:
    """The consumer queues asked for (all of them without ``--queue``); exits with the known names
    for one that is not a consumer queue."""
    from services.common.topology import CONSUMER_QUEUES

    known = [q.name for q in CONSUMER_QUEUES]
    if not names:
        return known
    chosen = []
    for name in names:
        full = name if name in known else f"zeroerrand.{name.removesuffix('.dead')}"
        if full.removesuffix(".dead") in known:
            full = full.removesuffix(".dead")
        if full not in known:
            fail(f"没有消费队列 {name} / no consumer queue {name}；可选：{', '.join(known)}")
        chosen.append(full)
    return list(dict.fromkeys(chosen))


async def _connect() -> Any:
    from services.common.bus import connect_robust
    from services.common.settings import BrokerSettings

    return await connect_robust(BrokerSettings(), timeout=10)


async def take_all(connection: Any, queue: str) -> tuple[Any, list[Any]]:
    """A channel and every message of ``queue``'s dead-letter queue taken on it, unacknowledged
    (closing the channel gives them all back). A dead-letter queue that does not exist yet is empty."""
    import aio_pika
    from aio_pika.exceptions import ChannelClosed

    channel = await connection.channel(publisher_confirms=False)
    try:
        dead = await channel.declare_queue(f"{queue}.dead", passive=True)
    except ChannelClosed:
        return await connection.channel(publisher_confirms=False), []
    expected = int(dead.declaration_result.message_count or 0)
    taken: list[aio_pika.abc.AbstractIncomingMessage] = []
    while len(taken) < expected:
        message = await dead.get(no_ack=False, fail=False, timeout=GET_TIMEOUT_S)
        if message is None:
            break
        taken.append(message)
    return channel, taken


def _matches(parked: Parked, ids: set[str]) -> bool:
    return not ids or (parked.message_id in ids)


async def _list(queues: Sequence[str]) -> list[tuple[str, list[Parked]]]:
    connection = await _connect()
    try:
        found = []
        for queue in queues:
            channel, taken = await take_all(connection, queue)
            found.append((queue, [describe(queue, m) for m in taken]))
            await channel.close()  # gives every message back, untouched
        return found
    finally:
        await connection.close()


@dead_letters_app.command("list")
def list_parked(queue: QueueOption = None, as_json: AsJson = False) -> None:
    """每个消费队列停放了多少条消息，每条的类型、编号、停放原因（种类与说明）、时间、发布者；不改变任何消息。"""
    found = asyncio.run(_list(consumer_queues(queue)))
    if as_json:
        typer.echo(dump({q: [p.as_dict() for p in parked] for q, parked in found}))
        return
    total = sum(len(parked) for _, parked in found)
    for name, parked in found:
        typer.echo(f"{name}.dead：{len(parked)} 条")
        for p in parked:
            typer.echo(f"  {p.message_id}  {p.type or '（无类型）'}  {p.kind}  {p.parked_at or '（无时间）'}"
                       f"  发布者 {p.publisher or '（无）'}  {p.size:,} 字节")
            typer.echo(f"    原因：{p.reason}")
    typer.echo(f"共 {total} 条停放的消息 / {total} parked" + ("；用 zeroerrand dead-letters replay 重放" if total else ""))


@dataclass
class ReplayResult:
    replayed: list[Parked]
    failed: list[tuple[Parked, str]]


def replay_properties(message: Any, publisher: str | None) -> dict[str, Any]:
    """The AMQP properties of the copy sent back: the message's own, without what parking added."""
    import aio_pika

    from services.common.topology import PARKING_HEADERS

    headers = {k: v for k, v in (message.headers or {}).items() if k not in PARKING_HEADERS}
    return {"message_id": message.message_id, "type": message.type, "content_type": message.content_type,
            "content_encoding": message.content_encoding, "headers": headers, "user_id": publisher,
            "delivery_mode": aio_pika.DeliveryMode.PERSISTENT}


async def _replay(queues: Sequence[str], ids: set[str]) -> tuple[list[Parked], ReplayResult]:
    connection = await _connect()
    result = ReplayResult([], [])
    seen: list[Parked] = []
    try:
        held = []
        for queue in queues:
            channel, taken = await take_all(connection, queue)
            held.append(channel)
            for message in taken:
                parked = describe(queue, message)
                seen.append(parked)
                if _matches(parked, ids):
                    await _send_back(connection, parked, message, result)
        for channel in held:
            await channel.close()  # those not replayed go back to their dead-letter queue
    finally:
        await connection.close()
    return seen, result


async def _send_back(connection: Any, parked: Parked, message: Any, result: ReplayResult) -> None:
    """Publishes the copy on a channel of its own (a refused ``user_id`` closes it), then, confirmed,
    acknowledges the parked message; else records why and leaves it parked."""
    import aio_pika

    publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        await asyncio.wait_for(publish_channel.default_exchange.publish(
            aio_pika.Message(message.body, **replay_properties(message, parked.publisher)),
            routing_key=parked.queue, mandatory=True), GET_TIMEOUT_S)
    except Exception as exc:  # returned, refused (a user_id not this connection's user), not confirmed
        result.failed.append((parked, str(exc) or repr(exc)))
        return
    finally:
        if not publish_channel.is_closed:
            await publish_channel.close()
    await message.ack()  # confirmed: now it may leave the dead-letter queue
    result.replayed.append(parked)


@dead_letters_app.command("replay")
def replay(queue: QueueOption = None,
           ids: Annotated[list[str] | None, typer.Option("--id", help="要重放的消息编号（AMQP message_id；可重复）")] = None,
           everything: Annotated[bool, typer.Option("--all", help="重放（所选队列中）全部停放的消息")] = False,
           as_json: AsJson = False) -> None:
    """把选中的停放消息送回它们停放前所在的队列（原消息体、类型、编号与消息头），经 RabbitMQ 确认后才从死信队列删除。
    先修正停放的原因（见 dead-letters list）再重放；没有匹配的消息时拒绝（退出码 1）。"""
    if not ids and not everything:
        fail("请用 --id 指明要重放的消息（见 zeroerrand dead-letters list），或用 --all 重放全部 / "
             "name messages with --id, or replay every parked message with --all")
    if ids and everything:
        fail("--id 与 --all 只能选一个 / --id or --all, not both")
    chosen = consumer_queues(queue)
    wanted = set(ids or [])
    seen, result = asyncio.run(_replay(chosen, wanted))
    missing = sorted(wanted - {p.message_id for p in seen if p.message_id})
    if as_json:
        typer.echo(json.dumps({"replayed": [p.as_dict() for p in result.replayed],
                               "failed": [{**p.as_dict(), "error": e} for p, e in result.failed],
                               "not_found": missing}, ensure_ascii=False, indent=2))
    else:
        for p in result.replayed:
            typer.echo(f"已重放 {p.message_id}（{p.type or '无类型'}）→ {p.queue}")
        for p, error in result.failed:
            typer.echo(f"未重放 {p.message_id}（{p.type or '无类型'}，仍在 {p.queue}.dead）：{error}", err=True)
    where = "、".join(chosen) if queue else "所有消费队列"
    if not result.replayed and not result.failed:
        fail(f"没有匹配的停放消息（{where}{'，编号 ' + '、'.join(missing) if missing else ''}），未重放任何消息 / "
             "no parked message matches")
    if missing:
        typer.echo(f"找不到这些编号的停放消息：{'、'.join(missing)} / not found", err=True)
    if result.failed or missing:
        raise typer.Exit(1)
