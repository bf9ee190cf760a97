"""services/tokens.py: why a token is refused, in words a client developer can act on."""

from __future__ import annotations

import time

import jwt
import pytest

from services.tokens import TokenError, issue_token, verify_token

SECRET = "unit-test-secret-0123456789abcdef0123"


def refusal(token: str) -> str:
    with pytest.raises(TokenError) as info:
        verify_token(token, secret=SECRET, public_key=None)
    return str(info.value)


def test_a_good_token_names_its_actor() -> None:
    actor = verify_token(
        issue_token(SECRET, "u1", "agent", name="Ann"), secret=SECRET, public_key=None
    )
    assert (actor.id, actor.role, actor.name) == ("u1", "agent", "Ann")


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("\xb7garbage", "malformed"),
        ("a.b.c", "malformed"),
        (issue_token("another-secret-0123456789abcdef", "u1", "agent"), "signature"),
        (jwt.encode({"sub": "u1", "exp": int(time.time()) + 60}, SECRET), "role claim"),
        (jwt.encode({"sub": "u1", "role": "agent"}, SECRET), "exp claim"),
        (jwt.encode({"sub": "u1", "role": "agent", "exp": 1}, SECRET), "expired"),
        (
            jwt.encode(
                {"sub": "u1", "role": "agent", "exp": int(time.time()) + 60}, SECRET, "HS512"
            ),
            "HS256",
        ),
    ],
    ids=["not-ascii", "not-base64", "other-key", "no-role", "no-exp", "expired", "algorithm"],
)
def test_each_refusal_says_what_is_wrong_without_decoder_internals(token: str, says: str) -> None:
    message = refusal(token)
    assert says in message
    assert "codec" not in message and "Invalid header" not in message
