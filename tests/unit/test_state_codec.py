"""The stored fold's codec: positional msgpack, exact round trips, older rows still read."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from hypothesis import given
from test_ticket_properties import PROPERTY, _run, scenarios

from domain.commands import Command, RaiseTicket
from domain.ticket import Ticket
from projections.statecodec import StoredTicket, decode_state, encode_state

MAP_FORMAT = msgspec.msgpack.Encoder()  # what rows held before: field names included


@PROPERTY
@given(scenarios())
def test_any_reachable_ticket_round_trips_exactly(
    scenario: tuple[RaiseTicket, list[tuple[Command, timedelta]]],
) -> None:
    state, _ = _run(*scenario)
    raw = encode_state(state)
    back = decode_state(raw)
    assert back == state
    assert type(back) is Ticket
    # and a row of the earlier format decodes to the same ticket
    assert decode_state(MAP_FORMAT.encode(state)) == state


@PROPERTY
@given(scenarios())
def test_the_stored_form_is_positional_and_much_smaller(
    scenario: tuple[RaiseTicket, list[tuple[Command, timedelta]]],
) -> None:
    state, _ = _run(*scenario)
    state = msgspec.structs.replace(state, messages=[])  # as the read models store it
    raw = encode_state(state)
    values = msgspec.msgpack.decode(raw)  # positional: the values in field order
    assert isinstance(values, list) and len(values) == len(msgspec.structs.fields(Ticket))
    assert values[0] == state.id and isinstance(values[6], list)  # requester, nested too
    assert len(raw) < len(MAP_FORMAT.encode(state)) / 2


@PROPERTY
@given(scenarios())
def test_the_fast_encoding_gives_the_same_bytes_as_the_stored_twin(
    scenario: tuple[RaiseTicket, list[tuple[Command, timedelta]]],
) -> None:
    """encode_state flattens the ticket by hand; the bytes must be those of its twin,
    with the messages kept (the slow path) and without them (the fast one)."""
    state, _ = _run(*scenario)
    for ticket in (state, msgspec.structs.replace(state, messages=[])):
        twin = msgspec.convert(ticket, StoredTicket, from_attributes=True)
        assert encode_state(ticket) == msgspec.msgpack.encode(twin)
        assert decode_state(encode_state(ticket)) == ticket
