"""One message per routed item: what the events' consumers make of it, and why the keys cannot clash.

The router publishes each item once, on ``zeroerrand.items``; the exchange binding brings the same
message to ``zeroerrand.events``, where the notifier and the ledger read it as ``item.routed``.
"""

from __future__ import annotations

import typing
from datetime import timedelta

import pytest
from pydantic import ValidationError

from services.common.consuming import decode_command, decode_event
from services.common.domain import ServiceMode
from services.common.messages import ROUTED_ITEM_TYPE, AnyEvent, ItemRouted, ItemUnroutable, item_routed
from services.common.topology import EVENTS, EXCHANGE_BINDINGS, ITEMS, UNROUTABLE_KEY
from services.router.handlers import outgoing_for
from services.router.routing import route_agreement
from services.router.rule_engine import RoutingEngine
from tests.conftest import ALUMINIUM, CONSULT_UNKNOWN, example


def _wire(result_outgoing: typing.Any) -> tuple[str, bytes]:
    return result_outgoing.message_type, result_outgoing.message.model_dump_json().encode()


def test_a_routed_item_message_is_read_as_the_item_routed_event_the_router_decided(engine: RoutingEngine) -> None:
    result = route_agreement(example(ALUMINIUM), engine)
    items = [o for o in outgoing_for(result) if o.exchange is ITEMS]
    assert len(items) == len(result.routed) == 23
    for out, routed in zip(items, result.routed, strict=True):
        message_type, body = _wire(out)
        assert message_type == ROUTED_ITEM_TYPE
        event = decode_event(message_type, body)
        # the same event id and times as when the router published item.routed itself: notification
        # ids and the ledger's applied ids derive from it, so nothing is stored twice across the upgrade
        assert event == routed
        assert decode_event(message_type, body) == event  # a redelivered copy is the same event


def test_the_event_of_an_item_is_deterministic_from_the_item(engine: RoutingEngine) -> None:
    routed = route_agreement(example(CONSULT_UNKNOWN), engine).routed[0]
    assert item_routed(routed.item).event_id == routed.event_id
    assert routed.occurred_at == routed.recorded_at == routed.item.decision.decided_at
    later = routed.item.model_copy(update={"decision": routed.item.decision.model_copy(
        update={"decided_at": routed.item.decision.decided_at + timedelta(hours=1)})})
    # routed again (a redelivered agreement): a new decision time, the same id
    assert item_routed(later).event_id == routed.event_id
    assert item_routed(later).occurred_at == routed.occurred_at + timedelta(hours=1)


def test_an_item_routed_event_published_by_an_earlier_router_is_still_read(engine: RoutingEngine) -> None:
    routed = route_agreement(example(ALUMINIUM), engine).routed[0]
    assert decode_event("item.routed", routed.model_dump_json().encode()) == routed


def test_a_parked_item_is_one_message_the_events_consumers_read_as_item_unroutable(engine: RoutingEngine) -> None:
    result = route_agreement(example(CONSULT_UNKNOWN), engine)
    [parked] = [o for o in outgoing_for(result) if o.routing_key == UNROUTABLE_KEY]
    assert parked.exchange is ITEMS
    event = decode_event(*_wire(parked))
    assert isinstance(event, ItemUnroutable) and event == result.unroutable[0]


def test_a_routed_item_body_that_does_not_fit_is_invalid() -> None:
    with pytest.raises(ValidationError):
        decode_event(ROUTED_ITEM_TYPE, b'{"item_id": "x"}')
    with pytest.raises(ValidationError):
        decode_event(ROUTED_ITEM_TYPE, b"\xff not json")
    with pytest.raises(ValidationError):  # a request's type comes from its body, never from the AMQP type
        decode_command(ROUTED_ITEM_TYPE, b'{"type": "item.routed"}')


def test_items_reach_the_events_by_one_binding_and_their_keys_cannot_be_taken_for_event_types() -> None:
    assert [(s.name, d.name, k) for s, d, k in EXCHANGE_BINDINGS] == [(ITEMS.name, EVENTS.name, "#")]
    event_types = set()
    for model in typing.get_args(typing.get_args(AnyEvent)[0]):
        event_types.add(model.model_fields["type"].default)
    assert ItemRouted.model_fields["type"].default in event_types
    prefixes = {t.split(".")[0] for t in event_types}
    assert not prefixes & {mode.value for mode in ServiceMode}  # a queue bound to item.* gets no routed item
    assert UNROUTABLE_KEY not in event_types
