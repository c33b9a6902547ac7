"""The ledger's item state machine (policy 五(四)–(五)). Pure: no I/O.

    routed ─accepted→ accepted ─progress→ in_progress ⇄ blocked (堵点/卡点)
                                    │            ⇄ suspended (waiting for the enterprise's 补正)
                                    └─completed→ completed ─delivered→ delivered

``accepted`` and ``in_progress`` may both block, suspend, progress or complete. Anything else is
an invalid transition: it is parked with the reason and not applied.
"""

from __future__ import annotations

from enum import StrEnum

from services.common.domain import OVERDUE_LEVEL_NAMES_ZH


class ItemState(StrEnum):
    ROUTED = "routed"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    BLOCKED = "blocked"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    DELIVERED = "delivered"


STATE_NAMES_ZH = {
    ItemState.ROUTED: "已分派",
    ItemState.ACCEPTED: "已受理",
    ItemState.IN_PROGRESS: "办理中",
    ItemState.BLOCKED: "堵点/卡点",
    ItemState.SUSPENDED: "等待企业补正",
    ItemState.COMPLETED: "已办结",
    ItemState.DELIVERED: "已移交",
}

_WORKING = frozenset({ItemState.ACCEPTED, ItemState.IN_PROGRESS})

# event type -> (states it may come from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[ItemState], ItemState]] = {
    "item.accepted": (frozenset({ItemState.ROUTED}), ItemState.ACCEPTED),
    "item.progress": (_WORKING, ItemState.IN_PROGRESS),
    "item.blocked": (_WORKING, ItemState.BLOCKED),
    "item.unblocked": (frozenset({ItemState.BLOCKED}), ItemState.IN_PROGRESS),
    "item.suspended": (_WORKING, ItemState.SUSPENDED),
    "item.resumed": (frozenset({ItemState.SUSPENDED}), ItemState.IN_PROGRESS),
    "item.completed": (_WORKING, ItemState.COMPLETED),
    "item.delivered": (frozenset({ItemState.COMPLETED}), ItemState.DELIVERED),
}
EVENT_NAMES_ZH = {
    "item.accepted": "受理", "item.progress": "报告进度", "item.blocked": "报告堵点/卡点", "item.unblocked": "解除堵点",
    "item.suspended": "中止（等待补正）", "item.resumed": "恢复办理", "item.completed": "办结", "item.delivered": "移交结果",
}
FINISHED = frozenset({ItemState.COMPLETED, ItemState.DELIVERED})


class InvalidTransition(ValueError):
    """The event does not fit the item's current state; ``str()`` is the reason, in Chinese."""


def next_state(current: ItemState, event_type: str) -> ItemState:
    """The state after ``event_type``, or ``InvalidTransition`` saying why not."""
    if event_type not in TRANSITIONS:
        raise InvalidTransition(f"未知的进度事件 {event_type}")
    sources, target = TRANSITIONS[event_type]
    if current not in sources:
        allowed = "、".join(STATE_NAMES_ZH[s] for s in sorted(sources, key=list(ItemState).index))
        raise InvalidTransition(f"事项当前状态为“{STATE_NAMES_ZH[current]}”，不能{EVENT_NAMES_ZH[event_type]}"
                                f"（只有“{allowed}”状态可以）")
    return target


# The levels of an overdue item: each is announced once.
OVERDUE_LEVELS = tuple(OVERDUE_LEVEL_NAMES_ZH)


def overdue_levels(used: int, limit: int) -> list[str]:
    """Levels reached after ``used`` working days of a ``limit``-day item.

    warning: one working day left; yellow card: the limit is reached; red card: the limit is
    exceeded by half (used ≥ 1.5 × limit).
    """
    levels = []
    if used >= limit - 1:
        levels.append("warning")
    if used >= limit:
        levels.append("yellow")
    if used * 2 >= limit * 3:
        levels.append("red")
    return levels
