"""The router's message handler: decode, route with the rules in force, publish, then ack."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.common.bus import Outgoing, Publisher, event_out
from services.common.messages import ROUTED_ITEM_TYPE, AgreementSigned, ItemRouted, ItemUnroutable, RoutedItem
from services.common.operations import AGREEMENTS_REJECTED, ITEMS_ROUTED, ITEMS_UNROUTABLE
from services.common.topology import ITEMS, UNROUTABLE_KEY, item_headers, unroutable_headers
from services.router.active_rules import ActiveRules
from services.router.routing import RoutingResult, route_agreement

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
    assert result.started is not None
    out = [event_out(result.started)]
    out.extend(item_out(routed.item) for routed in result.routed)
    out.extend(unroutable_out(parked) for parked in result.unroutable)
    return out


def unroutable_out(parked: ItemUnroutable) -> Outgoing:
    """A parked item: the ``item.unroutable`` event itself, on ``zeroerrand.items`` with key ``unroutable``."""
    return Outgoing(ITEMS, UNROUTABLE_KEY, parked, parked.item_id, parked.type, unroutable_headers(parked))


def item_out(item: RoutedItem) -> Outgoing:
    """The item for downstream systems: key ``{mode}.{unit}``, its id as the AMQP message id."""
    return Outgoing(ITEMS, item.decision.routing_key, item, item.item_id, ROUTED_ITEM_TYPE, item_headers(item))


async def handle_agreement_signed(agreement: AgreementSigned, rules: ActiveRules, publisher: Publisher) -> RoutingResult:
    """Routes one agreement and returns after every resulting message is confirmed."""
    result = route_agreement(agreement, rules.engine)
    await publisher.publish_all(outgoing_for(result))
    _count(result)
    _log(agreement, result.routed, result.unroutable, result.rejected is not None)
    return result


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


def _log(agreement: AgreementSigned, routed: Sequence[ItemRouted], unroutable: Sequence[ItemUnroutable],
         rejected: bool) -> None:
    if rejected:
        log.info("agreement %s rejected: not eligible", agreement.agreement_id)
    else:
        log.info("agreement %s: %d items routed, %d unroutable", agreement.agreement_id, len(routed), len(unroutable))
