"""Authentication, the role policy and rate limiting, applied to the whole application.

``AccessGuard`` runs (from the one request middleware) for every routed HTTP request
except ``/health/*`` and the OpenAPI docs, so a route added later cannot forget it. It
identifies the principal (Bearer JWT or HTTP Basic), puts the ``domain.events.Actor``
on ``request.user``, applies the per-principal rate limit, and enforces the role table:

- auditors read everything and change nothing (any unsafe method → 403);
- ``/v1/audit/*`` is for auditors and admins only;
- a handler may narrow further with ``opt=allow("admin", ...)``.

Failures raise exceptions; ``services.api.errors`` renders them in the dialect's envelope.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec
from litestar.types import Scope

from domain.events import Actor
from services.api import ratewindow
from services.api.errors import Denied, TooManyRequests, Unauthenticated
from services.passwords import hash_password, verify_password
from services.settings import Settings
from services.tokens import TokenError, verify_token

log = logging.getLogger("ticketing.api.auth")

PUBLIC_PREFIXES = ("/health/", "/schema/")


def is_public_path(scope: Any) -> bool:
    path = str(scope.get("path", ""))
    return path == "/schema" or path.startswith(PUBLIC_PREFIXES)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
AUDIT_PREFIX = "/v1/audit"
BASIC_CACHE_TTL_S = 30.0
BASIC_CACHE_MAX = 10_000
TOKEN_CACHE_MAX = 10_000
# Password guessing: after this many failed Basic logins for one user name from one client
# address within a minute, that name is answered 429 from that address without checking
# the password (a credential verified earlier keeps working from the cache); a name
# guessed from many addresses is stopped at NAME_FAILURE_FACTOR times that, and an
# address that fails with any names at SOURCE_FAILURE_FACTOR times it (so a flood of
# made-up names cannot queue slow hashes ahead of real logins). Keyed by address too, so
# a stranger who knows an integration's user name cannot lock it out from elsewhere.
# Off with rate limiting. And at most this many slow password hashes run at once per
# process (argon2 takes 64 MiB each).
BASIC_FAILURES_PER_MINUTE = 10
NAME_FAILURE_FACTOR = 10
SOURCE_FAILURE_FACTOR = 3
CONCURRENT_PASSWORD_CHECKS = 4
ROLES_OPT = "roles"
READ_OPT = "read_only"  # handler opt: a POST that only reads (auditors may send it)


def allow(*roles: str) -> dict[str, Any]:
    """Handler ``opt`` restricting a route to these roles (on top of the global policy)."""
    return {ROLES_OPT: frozenset(roles)}


class BasicCache:
    """Verified Basic credentials, keyed by an HMAC of the credential (never the password).

    An entry lives ``ttl`` seconds, so disabling a user takes effect within that window.
    """

    def __init__(self, ttl: float = BASIC_CACHE_TTL_S, max_entries: int = BASIC_CACHE_MAX) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: dict[bytes, tuple[Actor, float]] = {}

    def digest(self, name: str, password: str) -> bytes:
        return hmac.new(self._key, f"{name}\x00{password}".encode(), hashlib.sha256).digest()

    def get(self, digest: bytes) -> Actor | None:
        hit = self._entries.get(digest)
        if hit is None:
            return None
        actor, expires = hit
        if expires < time.monotonic():
            self._entries.pop(digest, None)
            return None
        return actor

    def put(self, digest: bytes, actor: Actor) -> None:
        if len(self._entries) >= self.max_entries:
            now = time.monotonic()
            for k in [k for k, (_, exp) in self._entries.items() if exp < now]:
                del self._entries[k]
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[digest] = (actor, time.monotonic() + self.ttl)


class TokenCache:
    """Verified Bearer tokens, so a client's every request does not re-verify the same JWT.

    Keyed by the whole token (signature included): a different or tampered token is a
    miss. An entry is only served while the token's own ``exp`` lies in the future, so
    expiry is enforced exactly as on a fresh verification; failures are never cached.
    """

    def __init__(self, max_entries: int = TOKEN_CACHE_MAX) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Actor, float]] = {}

    def get(self, token: str) -> Actor | None:
        hit = self._entries.get(token)
        if hit is None:
            return None
        actor, exp = hit
        if exp <= time.time():
            self._entries.pop(token, None)
            return None
        return actor

    def put(self, token: str, actor: Actor, exp: float) -> None:
        if len(self._entries) >= self.max_entries:
            now = time.time()
            for k in [k for k, (_, e) in self._entries.items() if e <= now]:
                del self._entries[k]
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[token] = (actor, exp)


class _Exp(msgspec.Struct):
    exp: float


_exp_decoder = msgspec.json.Decoder(_Exp)


def _verified_exp(token: str) -> float | None:
    """The ``exp`` claim of a token ``verify_token`` has just accepted (None: do not cache)."""
    try:
        payload = token.split(".")[1]
        return _exp_decoder.decode(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        ).exp
    except (IndexError, ValueError, binascii.Error, msgspec.DecodeError):
        return None


# A hash to verify against when the user does not exist, so a wrong name costs the same
# time as a wrong password (no user enumeration by timing).
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_hex(16))
    return _DUMMY_HASH


class LoginThrottle:
    """Failed Basic logins over the last minute (services/api/ratewindow.py): per user
    name and client address, per name, and per address (BASIC_FAILURES_PER_MINUTE).

    Fails open when Redis is unavailable (as the rate limiter does): the password check
    itself still stands, only its repetition goes unbounded.
    """

    def __init__(
        self,
        per_minute: int = BASIC_FAILURES_PER_MINUTE,
        prefix: str = "ticketing:authfail",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_minute = per_minute
        self.prefix = prefix
        self.clock = clock

    def _keys(self, name: str, source: str) -> list[tuple[str, int]]:
        # digests: user names are client input, keys are not the place for them
        def key(kind: str, *parts: str) -> str:
            digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]
            return f"{self.prefix}:{kind}:{digest}"

        n = self.per_minute
        return [
            (key("pair", name, source), n),
            (key("name", name), n * NAME_FAILURE_FACTOR),
            (key("source", source), n * SOURCE_FAILURE_FACTOR),
        ]

    async def check(self, redis: Any, name: str, source: str = "") -> None:
        """429 when one more failure for ``name`` from ``source`` would exceed a limit."""
        if redis is None or self.per_minute <= 0:
            return
        wait = 0
        for key, limit in self._keys(name, source):
            try:
                failed = await ratewindow.count(redis, key, self.clock(), add=False)
            except Exception:
                return
            if failed.estimate() + 1 > limit:
                wait = max(wait, failed.retry_after(limit))
        if wait:
            raise TooManyRequests(wait)

    async def failed(self, redis: Any, name: str, source: str = "") -> None:
        if redis is None or self.per_minute <= 0:
            return
        with contextlib.suppress(Exception):
            for key, _ in self._keys(name, source):
                await ratewindow.count(redis, key, self.clock(), add=True)


class Authenticator:
    def __init__(
        self,
        settings: Settings,
        cache: BasicCache | None = None,
        token_cache: TokenCache | None = None,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache or BasicCache()
        self.tokens = token_cache or TokenCache()
        # with rate limiting turned off (TICKETING_RATE_LIMIT_PER_MINUTE=0), this limit too
        self.throttle = throttle or LoginThrottle(
            BASIC_FAILURES_PER_MINUTE if settings.rate_limit_per_minute > 0 else 0
        )
        self._hashing = asyncio.Semaphore(CONCURRENT_PASSWORD_CHECKS)

    async def authenticate(
        self, authorization: str | None, pool: asyncpg.Pool, redis: Any = None, source: str = ""
    ) -> Actor:
        """The caller's identity; ``source`` is the client's address (the login throttle)."""
        if not authorization:
            raise Unauthenticated(
                "authentication required: send 'Authorization: Bearer <token>' or HTTP Basic"
            )
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            if not value:
                raise Unauthenticated("the Bearer token is empty")
            cached = self.tokens.get(value)
            if cached is not None:
                return cached
            try:
                actor = verify_token(
                    value,
                    secret=self.settings.jwt_secret,
                    public_key=self.settings.jwt_public_key,
                )
            except TokenError as exc:
                raise Unauthenticated(str(exc)) from None
            exp = _verified_exp(value)
            if exp is not None:
                self.tokens.put(value, actor, exp)
            return actor
        if scheme == "basic":
            return await self._basic(value, pool, redis, source)
        raise Unauthenticated("unsupported authorization scheme; use Bearer or Basic")

    async def _basic(self, value: str, pool: asyncpg.Pool, redis: Any, source: str) -> Actor:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise Unauthenticated(
                "the Basic credentials are not valid base64 of name:password"
            ) from None
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Unauthenticated(
                "the Basic credentials must be name:password in UTF-8 (RFC 7617)"
            ) from None
        name, sep, password = decoded.partition(":")
        if not sep or not name:
            raise Unauthenticated("the Basic credentials must be name:password")
        if "\x00" in decoded:  # no API user has one, and the database cannot take it
            raise Unauthenticated("wrong user name or password, or the API user is disabled")
        digest = self.cache.digest(name, password)
        cached = self.cache.get(digest)
        if cached is not None:
            return cached
        await self.throttle.check(redis, name, source)
        row = await pool.fetchrow(
            "SELECT password_hash, role, display_name, disabled FROM api_users WHERE name = $1",
            name,
        )
        stored = row["password_hash"] if row is not None else _dummy_hash()
        # argon2 is deliberately slow (and large): off the event loop, a few at a time.
        async with self._hashing:
            ok = await asyncio.to_thread(verify_password, stored, password)
        if row is None or not ok or row["disabled"]:
            await self.throttle.failed(redis, name, source)
            raise Unauthenticated("wrong user name or password, or the API user is disabled")
        actor = Actor(id=name, role=row["role"], name=row["display_name"] or name)
        self.cache.put(digest, actor)
        return actor


def check_policy(actor: Actor, method: str, path: str, opt: dict[str, Any] | None) -> None:
    """The role table of SPEC section 2, for every route."""
    if path == AUDIT_PREFIX or path.startswith(AUDIT_PREFIX + "/"):
        if actor.role not in ("auditor", "admin"):
            raise Denied("the audit API is for auditors and admins only")
    if actor.role == "auditor" and method not in SAFE_METHODS and not (opt or {}).get(READ_OPT):
        raise Denied("auditors may read everything but change nothing")
    roles = (opt or {}).get(ROLES_OPT)
    if roles is not None and actor.role not in roles:
        raise Denied(
            f"this needs the role {' or '.join(sorted(roles))}; your token has {actor.role}"
        )


class RateLimiter:
    """Requests per principal over the last minute, in Redis (services/api/ratewindow.py);
    fails open when Redis is down."""

    def __init__(
        self,
        per_minute: int,
        prefix: str = "ticketing:rl",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_minute = per_minute
        self.prefix = prefix
        self.clock = clock
        self._last_warning = 0.0

    async def check(self, redis: Any, principal: str) -> None:
        if self.per_minute <= 0 or redis is None:
            return
        now = self.clock()
        try:
            counted = await ratewindow.count(redis, f"{self.prefix}:{principal}", now, add=True)
        except Exception:  # Redis down or slow: serve the request rather than refuse it
            if now - self._last_warning > 10:
                self._last_warning = now
                log.warning("rate limiter unavailable (Redis); allowing requests")
            return
        if counted.estimate() > self.per_minute:
            raise TooManyRequests(counted.retry_after(self.per_minute))


class AccessGuard:
    """Authenticates, rate-limits and authorizes one request; raises when it may not go on.

    Called by ``services.api.middleware.RequestMiddleware`` for every routed HTTP request
    whose path is not public (decided on the request path, not the handler's, so
    /health/* and the docs stay open). A path or method no route serves never reaches it:
    the router answers 404 or 405 first, to anyone, as most HTTP APIs do; nothing is read.
    """

    def __init__(self, settings: Settings, authenticator: Authenticator | None = None) -> None:
        self.authenticator = authenticator or Authenticator(settings)
        self.limiter = RateLimiter(settings.rate_limit_per_minute)

    async def __call__(self, scope: Scope) -> None:
        authorization: str | None = None
        for k, v in scope.get("headers", ()):
            if k == b"authorization":
                authorization = v.decode("latin-1")
                break
        state = scope["litestar_app"].state
        redis = getattr(state, "redis", None)
        client = scope.get("client")
        source = str(client[0]) if client else ""
        actor = await self.authenticator.authenticate(authorization, state.pool, redis, source)
        scope["user"] = actor
        scope["auth"] = (
            "basic" if authorization and authorization[:6].lower() == "basic " else "bearer"
        )
        await self.limiter.check(redis, f"{actor.role}:{actor.id}")
        handler = scope.get("route_handler")
        opt = getattr(handler, "opt", None)
        check_policy(actor, str(scope.get("method", "GET")), scope["path"], opt)
