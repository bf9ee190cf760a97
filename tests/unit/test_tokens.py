"""services/tokens.py: why a token is refused, in words a client developer can act on."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.settings import SettingsError, load_settings
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
        (
            jwt.encode(
                {"sub": "u1", "role": "agent", "exp": str(int(time.time()) + 86400)}, SECRET
            ),
            "exp claim must be a number",
        ),
        (
            jwt.encode(
                {"sub": "u1", "role": "agent", "exp": int(time.time()) + 86400, "iat": "1"}, SECRET
            ),
            "iat claim must be a number",
        ),
    ],
    ids=[
        "not-ascii",
        "not-base64",
        "other-key",
        "no-role",
        "no-exp",
        "expired",
        "algorithm",
        "exp-a-string",
        "iat-a-string",
    ],
)
def test_each_refusal_says_what_is_wrong_without_decoder_internals(token: str, says: str) -> None:
    message = refusal(token)
    assert says in message
    assert "codec" not in message and "Invalid header" not in message


def _pem(public_key: Any) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_tokens_of_an_identity_provider_verify_with_its_public_key(algorithm: str) -> None:
    if algorithm == "RS256":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        stranger: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private, stranger = (
            ec.generate_private_key(ec.SECP256R1()),
            ec.generate_private_key(ec.SECP256R1()),
        )
    claims = {"sub": "idp-user", "role": "customer", "exp": int(time.time()) + 60}
    pem = _pem(private.public_key())
    load_settings({"TICKETING_JWT_PUBLIC_KEY": pem})  # accepted at start-up
    actor = verify_token(jwt.encode(claims, private, algorithm), secret=None, public_key=pem)
    assert (actor.id, actor.role) == ("idp-user", "customer")
    with pytest.raises(TokenError, match="signature"):
        verify_token(jwt.encode(claims, stranger, algorithm), secret=None, public_key=pem)
    # an HS256 token made with the public key as its secret is the classic confusion attack
    with pytest.raises(TokenError):
        verify_token(jwt.encode(claims, "x" * 64, "HS256"), secret=None, public_key=pem)


@pytest.mark.parametrize(
    "pem",
    [
        "not a pem",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ],
    ids=["garbage", "bad-body"],
)
def test_a_public_key_that_cannot_verify_stops_start_up(pem: str) -> None:
    with pytest.raises(SettingsError, match="TICKETING_JWT_PUBLIC_KEY"):
        load_settings({"TICKETING_JWT_PUBLIC_KEY": pem})


def test_a_private_key_in_place_of_the_public_one_stops_start_up() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(SettingsError, match="TICKETING_JWT_PUBLIC_KEY"):
        load_settings({"TICKETING_JWT_PUBLIC_KEY": pem})
