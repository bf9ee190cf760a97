"""Issue and verify the service's JWTs (HS256 with a secret, or RS256/ES256 with a key)."""

from __future__ import annotations

import re
import time
from typing import Any

import jwt

from domain.events import Actor

ROLES = ("customer", "agent", "admin", "auditor")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class TokenError(Exception):
    """The token is missing, malformed, expired or wrongly signed; the message says which."""


def issue_token(
    secret: str, sub: str, role: str, *, name: str | None = None, ttl_s: int = 3600
) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "role": role, "iat": now, "exp": now + ttl_s}
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(token: str, *, secret: str | None, public_key: str | None) -> Actor:
    """Check signature and expiry, require sub/role/exp; return the actor it names."""
    if public_key:
        key: str = public_key
        algorithms = ["RS256", "ES256"]
    elif secret:
        key, algorithms = secret, ["HS256"]
    else:  # pragma: no cover - serve refuses to start without either
        raise TokenError("the server has no key to verify tokens")
    try:
        claims = jwt.decode(
            token, key, algorithms=algorithms, options={"require": ["exp", "sub", "role"]}
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(_why_invalid(exc, algorithms)) from None
    for claim in ("exp", "nbf", "iat"):  # RFC 7519: NumericDate (PyJWT also takes "123")
        value = claims.get(claim)
        if claim in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise TokenError(f"the token's {claim} claim must be a number (seconds since 1970)")
    sub, role, name = claims.get("sub"), claims.get("role"), claims.get("name")
    if not isinstance(sub, str) or not sub:
        raise TokenError("the token's sub claim must be a non-empty string")
    for claim, value in (("sub", sub), ("name", name)):
        if isinstance(value, str) and _CONTROL.search(value):
            raise TokenError(f"the token's {claim} claim contains control characters")
    if role not in ROLES:
        raise TokenError(f"the token's role claim must be one of {', '.join(ROLES)}")
    return Actor(id=sub, role=role, name=name if isinstance(name, str) else None)


def _why_invalid(exc: jwt.InvalidTokenError, algorithms: list[str]) -> str:
    """What is wrong with a token, in words for the client's developer (PyJWT's own
    messages name decoder internals)."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token lacks the required {exc.claim} claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the token's signature does not verify (signed with another key?)"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return f"the token must be signed with {' or '.join(algorithms)}"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet (its iat or nbf claim lies in the future)"
    if isinstance(exc, jwt.DecodeError):
        return "the token is malformed: expected a JWT (three base64url parts joined by dots)"
    return "the token is not valid"
