"""arq job (de)serialisation with msgspec msgpack: no pickle on either side of the queue."""

from __future__ import annotations

from typing import Any

import msgspec

QUEUE_NAME = "ticketing:queue"


def _fallback(obj: Any) -> Any:
    # arq stores a failed job's exception as its result; keep its text, not the object
    return repr(obj)


_encoder = msgspec.msgpack.Encoder(enc_hook=_fallback)
_decoder = msgspec.msgpack.Decoder()


def job_serializer(obj: dict[str, Any]) -> bytes:
    return _encoder.encode(obj)


def job_deserializer(data: bytes) -> dict[str, Any]:
    value: dict[str, Any] = _decoder.decode(data)
    return value
