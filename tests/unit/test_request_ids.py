"""Generated request ids: unique, 32 hex digits, and a forked process never repeats them."""

from __future__ import annotations

import os
import re

from services.api.middleware import _RequestIds, request_id_from_scope


def test_ids_are_unique_hex_of_the_usual_length() -> None:
    ids = _RequestIds()
    made = [ids() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in made)
    assert _RequestIds()() != made[0]  # another process (or restart): another prefix


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    ids = _RequestIds()
    ids()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, ids().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    assert child[:16] != ids()[:16]


def test_a_sane_client_id_is_kept_and_a_bad_one_replaced() -> None:
    scope = {"headers": [(b"x-request-id", b"abc-123")]}
    assert request_id_from_scope(scope) == "abc-123"
    bad = {"headers": [(b"x-request-id", b"no spaces\r\nplease")]}
    assert re.fullmatch(r"[0-9a-f]{32}", request_id_from_scope(bad))
