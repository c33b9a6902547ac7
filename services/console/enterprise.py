"""The enterprise's page, read on a phone: what is done, what is under way and what waits, the one
next step (its own first: materials to supply), whom to call, then the open items; the delivered
ones are folded away. Pure: it arranges the project's progress as ``views.project_progress`` gave it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.evaluation.ledger import ItemState
from services.evaluation.views import ItemRow, ProjectProgress


@dataclass(frozen=True)
class Contact:
    """Someone the enterprise may call about its open items: a 服务专员, or a unit's contact."""

    who: str
    phone: str | None
    about: tuple[str, ...]  # the items, by name


@dataclass(frozen=True)
class Summary:
    delivered: int
    under_way: int  # open and no longer waiting (ready, contacted, accepted, in progress, blocked, suspended, completed)
    waiting: int  # waiting for prerequisites
    yours: tuple[ItemRow, ...]  # suspended: waiting for the enterprise to supply materials
    next_row: ItemRow | None
    next_step: str
    contacts: tuple[Contact, ...]
    names: Mapping[str, str]  # item code → name
    open_rows: tuple[ItemRow, ...]  # the items under way, the enterprise's own first, then by due day
    waiting_rows: tuple[ItemRow, ...]
    done_rows: tuple[ItemRow, ...]  # delivered (and withdrawn) ones, folded


def next_step(row: ItemRow, names: Mapping[str, str] | None = None) -> str:
    """What happens next on an item, and who does it, as the enterprise reads it (``names``: item
    code → name, to name what a waiting item waits for)."""
    unit = row.responsible_unit_name
    order = row.task_order
    if row.state is ItemState.SUSPENDED:
        return f"需要您补正材料，补正后由{unit}恢复办理"
    if row.state is ItemState.BLOCKED:
        resolvers = "、".join(dict.fromkeys(b.resolver_name for b in row.blockers)) or unit
        return f"遇到堵点/卡点，正由{resolvers}协调解决"
    if row.state is ItemState.WAITING:
        waited = "、".join(f"{(names or {}).get(c, c)}（{c}）" if (names or {}).get(c) else c for c in row.waiting_for)
        return f"等待前置事项 {waited} 办结移交后开始办理"
    if row.state is ItemState.READY and row.task_order_required and order is None:
        return "待经济发展招商服务局下发“专业跑腿”任务单，随后政联公司将指派服务专员联系您"
    if row.state is ItemState.READY and order is not None and order.state == "issued":
        return f"任务单已下发，待{order.assigned_to_name}指派服务专员联系您"
    if row.state is ItemState.READY:
        return f"待{unit}主动联系您，一次性告知办理要求"
    if row.state is ItemState.CONTACTED:
        return f"请按材料清单备齐材料，由{unit}受理"
    if row.state in (ItemState.ACCEPTED, ItemState.IN_PROGRESS):
        return f"{unit}办理中" + (f"，应于 {row.due} 前办结" if row.due and row.running_clock == "statutory" else "")
    if row.state is ItemState.COMPLETED:
        return f"已办结，待{unit}向您一次性移交审批结果"
    return row.state_name


def _urgency(row: ItemRow) -> tuple[int, Any, str]:
    mine = 0 if row.state is ItemState.SUSPENDED else 1 if row.state is ItemState.BLOCKED else 2
    return mine, row.due.toordinal() if row.due else 10**7, row.key


def summarize(progress: ProjectProgress, contacts: Mapping[str, str]) -> Summary:
    """The page's parts; ``contacts``: unit code → contact (and phone) from ``directory.yaml``."""
    done = [r for r in progress.items if r.state in (ItemState.DELIVERED, ItemState.WITHDRAWN)]
    waiting = [r for r in progress.items if r.state is ItemState.WAITING]
    under_way = sorted((r for r in progress.items if r not in done and r not in waiting), key=_urgency)
    yours = tuple(r for r in under_way if r.state is ItemState.SUSPENDED)
    first = under_way[0] if under_way else (waiting[0] if waiting else None)
    names = {r.item_code: r.item_name for r in progress.items}
    if first is None:
        step = "全部审批事项已办结移交" if progress.items else "暂无审批事项"
    else:
        step = f"{first.item_name}：{next_step(first, names)}"
    return Summary(delivered=sum(1 for r in done if r.state is ItemState.DELIVERED), under_way=len(under_way),
                   waiting=len(waiting), yours=yours, next_row=first, next_step=step, names=names,
                   contacts=_contacts(under_way, contacts), open_rows=tuple(under_way), waiting_rows=tuple(waiting),
                   done_rows=tuple(done))


def _contacts(rows: Sequence[ItemRow], contacts: Mapping[str, str]) -> tuple[Contact, ...]:
    """Whom to call about the items under way: each one's 服务专员 if named, else its unit's contact."""
    found: dict[tuple[str, str | None], list[str]] = {}
    for row in rows:
        if row.specialist_name:
            key = (f"服务专员 {row.specialist_name}（{row.specialist_unit_name or row.responsible_unit_name}）",
                   row.specialist_phone)
        else:
            contact = contacts.get(row.responsible_unit)
            who, _, phone = (contact or "").partition("，电话 ")
            key = (f"{row.responsible_unit_name}" + (f" {who}" if who else ""), phone or None)
        found.setdefault(key, []).append(row.item_name)
    return tuple(Contact(who=who, phone=phone, about=tuple(items)) for (who, phone), items in found.items())
