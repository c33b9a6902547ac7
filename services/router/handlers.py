"""The router's message handler: decode, route with the rules in force, publish, then ack."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.common.bus import Outgoing, Publisher, event_out
from services.common.messages import AgreementSigned, ItemRouted, ItemUnroutable
from services.common.topology import ITEMS, UNROUTABLE_KEY
from services.router.active_rules import ActiveRules
from services.router.routing import RoutingResult, route_agreement

log = logging.getLogger(__name__)


def outgoing_for(result: RoutingResult) -> list[Outgoing]:
    """Every message one agreement produces: items on ``zeroerrand.items``, events on ``.events``."""
    out: list[Outgoing] = []
    if result.rejected is not None:
        return [event_out(result.rejected)]
    assert result.started is not None
    out.append(event_out(result.started))
    for routed in result.routed:
        out.append(_item_out(routed))
        out.append(event_out(routed))
    for parked in result.unroutable:
        out.append(Outgoing(ITEMS, UNROUTABLE_KEY, parked, parked.item_id, parked.type,
                            {"x-zeroerrand-project": parked.project_code, "x-zeroerrand-item": parked.item_code,
                             "x-zeroerrand-reason": parked.unroutable.reason_code}))
        out.append(event_out(parked))
    return out


def _item_out(routed: ItemRouted) -> Outgoing:
    item = routed.item
    headers = {
        "x-zeroerrand-project": item.project_code,
        "x-zeroerrand-item": item.item_code,
        "x-zeroerrand-mode": item.mode.value,
        "x-zeroerrand-unit": item.responsible_unit,
        "x-zeroerrand-rule": item.decision.rule_id,
        "x-zeroerrand-rules-version": item.decision.rules_version,
    }
    return Outgoing(ITEMS, item.decision.routing_key, item, item.item_id, "approval.item", headers)


async def handle_agreement_signed(agreement: AgreementSigned, rules: ActiveRules, publisher: Publisher) -> RoutingResult:
    """Routes one agreement and returns after every resulting message is confirmed."""
    result = route_agreement(agreement, rules.engine)
    await publisher.publish_all(outgoing_for(result))
    _log(agreement, result.routed, result.unroutable, result.rejected is not None)
    return result


def _log(agreement: AgreementSigned, routed: Sequence[ItemRouted], unroutable: Sequence[ItemUnroutable],
         rejected: bool) -> None:
    if rejected:
        log.info("agreement %s rejected: not eligible", agreement.agreement_id)
    else:
        log.info("agreement %s: %d items routed, %d unroutable", agreement.agreement_id, len(routed), len(unroutable))
