"""The stored fold (``ticket_summaries.state``): domain.Ticket as positional msgpack.

Encoded as it is, every Ticket carries its field names (and those of its nested structs)
in every row: about 640 bytes, two thirds of them names. Here each domain struct gets a
generated twin with the same fields and ``array_like=True``, so a state is its values in
field order: about 200 bytes, a third of the summaries' heap, the WAL of every upsert and
the bytes a rebuild COPYs. The twins are derived from the domain types at import, so a
field added to the domain is stored without anything to keep in step; as with any
positional format, new fields go last, with a default (msgspec then reads older rows).

Rows written before this format (msgpack maps) still decode: the first byte tells.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import msgspec

from domain import ticket as domain

_twins: dict[type, type] = {}


def _twin(tp: type) -> type:
    """``tp`` (a msgspec Struct) as an array-like Struct with the same fields."""
    found = _twins.get(tp)
    if found is not None:
        return found
    fields: list[Any] = []
    for f in msgspec.structs.fields(tp):
        t = _positional(f.type)
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, t, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, t, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, t))
    twin = msgspec.defstruct(f"{tp.__name__}Stored", fields, array_like=True, frozen=True)
    _twins[tp] = twin
    return twin


def _positional(t: Any) -> Any:
    """A field's type with every Struct in it replaced by its twin."""
    if isinstance(t, type) and issubclass(t, msgspec.Struct):
        return _twin(t)
    origin = typing.get_origin(t)
    if origin is None or origin is typing.Literal:
        return t
    args = tuple(_positional(a) for a in typing.get_args(t))
    if origin in (typing.Union, types.UnionType):
        return typing.Union[args]  # noqa: UP007 - built from a runtime tuple
    return origin[args if len(args) > 1 else args[0]]


StoredTicket = _twin(domain.Ticket)
_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(StoredTicket)
_map_decoder = msgspec.msgpack.Decoder(domain.Ticket)  # rows of the earlier format

# msgpack's first byte: fixarray 0x90-0x9f, array16 0xdc, array32 0xdd (maps otherwise)
_ARRAY_FIRST = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])


class _Nested(Exception):
    """A value holds structs the fast path does not flatten (a non-empty list of them)."""


def _struct_in(t: Any) -> type | None:
    """The Struct type of a field typed ``S`` or ``S | None``, else None."""
    if isinstance(t, type) and issubclass(t, msgspec.Struct):
        return t
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1:
            return _struct_in(args[0])
    return None


def _mentions_struct(t: Any) -> bool:
    if isinstance(t, type) and issubclass(t, msgspec.Struct):
        return True
    return any(_mentions_struct(a) for a in typing.get_args(t))


def _flattener(tp: type) -> Any:
    """A function giving what ``tp``'s twin encodes as (its values in field order, nested
    structs as their own value lists) straight from the value's attributes.

    ``msgspec.convert`` to the twin builds a twin of every struct first: about 4 us of
    the 7 a rebuild spends per summary row. A field that holds structs in any other way
    (a list of them) must be empty here, or ``_Nested`` is raised.
    """
    nested: list[tuple[int, Any]] = []
    guarded: list[int] = []
    for i, f in enumerate(msgspec.structs.fields(tp)):
        inner = _struct_in(f.type)
        if inner is not None:
            nested.append((i, _flattener(inner)))
        elif _mentions_struct(f.type):
            guarded.append(i)
    astuple = msgspec.structs.astuple
    if not nested and not guarded:
        return astuple

    def flat(obj: Any) -> list[Any]:
        values = list(astuple(obj))
        for i, sub in nested:
            if values[i] is not None:
                values[i] = sub(values[i])
        for i in guarded:
            if values[i]:
                raise _Nested
        return values

    return flat


_flat_ticket = _flattener(domain.Ticket)


def encode_state(ticket: domain.Ticket) -> bytes:
    """The stored form of ``ticket``: the same bytes as encoding its twin (a test checks
    both ways agree), through the fast path when its message list is empty, as the read
    models keep it."""
    try:
        return _encoder.encode(_flat_ticket(ticket))
    except _Nested:
        return _encoder.encode(msgspec.convert(ticket, StoredTicket, from_attributes=True))


def decode_state(raw: bytes) -> domain.Ticket:
    if raw[0] in _ARRAY_FIRST:
        stored = _decoder.decode(raw)
        return msgspec.convert(stored, domain.Ticket, from_attributes=True)
    return _map_decoder.decode(raw)
