"""The router's message handler: decode, route with the rules in force, publish, then ack."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from services.common.bus import Outgoing, Publisher, event_out
from services.common.messages import (
    ROUTED_ITEM_TYPE,
    AgreementAmended,
    AgreementRejected,
    AnyAgreement,
    ItemUnroutable,
    RoutedItem,
)
from services.common.operations import AGREEMENTS_REJECTED, ITEMS_ROUTED, ITEMS_UNROUTABLE
from services.common.topology import ITEMS, UNROUTABLE_KEY, item_headers, unroutable_headers
from services.router.active_rules import ActiveRules
from services.router.registry import AgreementRegistry, Refusal, fingerprint
from services.router.routing import RoutingResult, Take, admit, route_agreement, route_amendment

ADMIT_ATTEMPTS = 5  # another router took the same project revision meanwhile: decide again on what is stored

log = logging.getLogger(__name__)


def outgoing_for(result: RoutingResult) -> list[Outgoing]:
    """Every message one agreement produces, one per item: ``service.started`` (or the rejection)
    on ``zeroerrand.events``, then each item on ``zeroerrand.items``.

    The exchange binding ``zeroerrand.items`` → ``zeroerrand.events`` (``#``) brings each item
    message to the events' consumers too, so nothing is published twice. The started event goes
    first on the same channel, so every queue gets it before the project's items.
    """
    if result.rejected is not None:
        return [event_out(result.rejected)]
    first = result.started or result.amended
    assert first is not None
    out = [event_out(first)]
    out.extend(item_out(routed.item) for routed in result.routed)
    out.extend(unroutable_out(parked) for parked in result.unroutable)
    return out


def unroutable_out(parked: ItemUnroutable) -> Outgoing:
    """A parked item: the ``item.unroutable`` event itself, on ``zeroerrand.items`` with key ``unroutable``."""
    return Outgoing(ITEMS, UNROUTABLE_KEY, parked, parked.item_id, parked.type, unroutable_headers(parked))


def item_out(item: RoutedItem) -> Outgoing:
    """The item for downstream systems: key ``{mode}.{unit}``, its id as the AMQP message id."""
    return Outgoing(ITEMS, item.decision.routing_key, item, item.item_id, ROUTED_ITEM_TYPE, item_headers(item))


async def handle_agreement(agreement: AnyAgreement, rules: ActiveRules, publisher: Publisher,
                           registry: AgreementRegistry) -> RoutingResult:
    """Takes one agreement or 补充协议 into the registry (or rejects it), routes what it brings and
    returns after every resulting message is confirmed. The registry is written before anything is
    published: a crash in between makes the redelivery a replay of the same ids."""
    print_ = fingerprint(agreement)
    engine = rules.engine
    for _attempt in range(ADMIT_ATTEMPTS):
        now = datetime.now(UTC)
        decided = admit(agreement, print_, await registry.agreement(agreement.agreement_id),
                        await registry.project(agreement.project.code), engine.book.units, now)
        if isinstance(decided, AgreementRejected):
            result = RoutingResult(rejected=decided)
            break
        if not decided.replay:
            added = await registry.add(decided.admission)
            if added != "added":  # another router took the id or the revision meanwhile
                continue
        result = _route(agreement, decided, rules)
        break
    else:
        raise RuntimeError(f"agreement {agreement.agreement_id}: project {agreement.project.code} changed at each of "
                           f"{ADMIT_ATTEMPTS} attempts")
    await publisher.publish_all(outgoing_for(result))
    if result.rejected is not None:
        await registry.refused(Refusal(agreement_id=agreement.agreement_id, fingerprint=print_,
                                       reason_code=result.rejected.reason_code, reasons=result.rejected.reasons,
                                       event_id=result.rejected.event_id, recorded_at=result.rejected.recorded_at))
    _count(result)
    _log(agreement, result)
    return result


def _route(agreement: AnyAgreement, take: Take, rules: ActiveRules) -> RoutingResult:
    if isinstance(agreement, AgreementAmended):
        return route_amendment(agreement, take, rules.engine)
    return route_agreement(agreement, rules.engine)


def _count(result: RoutingResult) -> None:
    """The metrics of one agreement, once its messages are confirmed (an agreement redelivered after
    a crash between the confirm and its ack is counted again: the counters are of work done)."""
    if result.rejected is not None:
        AGREEMENTS_REJECTED.inc()
        return
    for routed in result.routed:
        ITEMS_ROUTED.labels(mode=routed.item.mode.value).inc()
    if result.unroutable:
        ITEMS_UNROUTABLE.inc(len(result.unroutable))


def _log(agreement: AnyAgreement, result: RoutingResult) -> None:
    if result.rejected is not None:
        level = logging.INFO if result.rejected.reason_code == "not_eligible" else logging.WARNING
        log.log(level, "%s %s rejected (%s): %s", agreement.type, agreement.agreement_id, result.rejected.reason_code,
                "; ".join(result.rejected.reasons))
    elif result.amended is not None:
        log.info("amendment %s of %s (revision %d): %d lines added (%d routed), %d removed",
                 agreement.agreement_id, agreement.project.code, result.amended.revision, len(result.amended.added),
                 len(result.routed), len(result.amended.removed))
    else:
        log.info("agreement %s: %d items routed, %d unroutable", agreement.agreement_id, len(result.routed),
                 len(result.unroutable))
