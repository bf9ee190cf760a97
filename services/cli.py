"""The `ticketing` command: dev, serve, worker, migrate, token, api-user, projections, audit,
bench."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import getpass
import logging
import os
import secrets
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import msgspec

from services.settings import Settings, SettingsError, load_settings

log = logging.getLogger("ticketing.cli")


def _die(message: str, code: int = 2) -> int:
    print(f"ticketing: {message}", file=sys.stderr)
    return code


def _require_db(settings: Settings) -> str:
    if not settings.database_url:
        raise SettingsError(
            "TICKETING_DATABASE_URL is not set (only `ticketing dev` starts an embedded database)"
        )
    return settings.database_url


# --- commands ---------------------------------------------------------------------------


MIGRATE_CONNECT_WAIT_S = 60.0


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    applied = asyncio.run(_migrate_when_reachable(_require_db(settings), MIGRATE_CONNECT_WAIT_S))
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


async def _migrate_when_reachable(dsn: str, wait_s: float) -> list[str]:
    """Migrate, waiting up to ``wait_s`` for a server that does not accept connections
    yet (a container started beside a database still initialising)."""
    import asyncpg

    from services.db import migrate

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await migrate(dsn)
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            if time.monotonic() >= deadline:
                raise
            print(f"waiting for the database ({exc.__class__.__name__}) ...", file=sys.stderr)
            await asyncio.sleep(1.0)


MAX_ID = 2**63 - 1  # ticket ids are bigint


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in text)


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from services.tokens import issue_token

    # What the API would refuse (services/tokens.verify_token), refused here, not printed.
    if not args.sub.strip():
        return _die("--sub must not be empty: it is the id of the user the token names")
    for flag, value in (("--sub", args.sub), ("--name", args.name)):
        if value is not None and _has_control(value):
            return _die(f"{flag} must not contain control characters")
    if args.ttl <= 0:
        return _die(f"--ttl must be a positive number of seconds, not {args.ttl}")
    if not settings.jwt_secret:
        return _die("TICKETING_JWT_SECRET is not set; it signs the token")
    try:
        print(issue_token(settings.jwt_secret, args.sub, args.role, name=args.name, ttl_s=args.ttl))
    except ValueError as exc:
        return _die(str(exc))
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise SettingsError("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def _api_user_add(dsn: str, name: str, role: str, display: str | None, pw: str) -> None:
    import asyncpg

    from services.passwords import hash_password

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO api_users (name, password_hash, role, display_name) VALUES ($1,$2,$3,$4)"
            " ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
            " role = EXCLUDED.role, display_name = EXCLUDED.display_name,"
            " disabled = false, disabled_at = NULL",
            name,
            hash_password(pw),
            role,
            display,
        )
    finally:
        await conn.close()


async def _api_user_disable(dsn: str, name: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        status = await conn.execute(
            "UPDATE api_users SET disabled = true, disabled_at = now() WHERE name = $1", name
        )
    finally:
        await conn.close()
    return bool(status.endswith(" 1"))


def cmd_api_user(settings: Settings, args: argparse.Namespace) -> int:
    dsn = _require_db(settings)
    if args.action == "add":
        if args.role not in ("customer", "agent", "admin", "auditor"):
            return _die("--role must be one of customer, agent, admin, auditor")
        # HTTP Basic sends "name:password" and splits at the first colon
        if not args.name or ":" in args.name or _has_control(args.name):
            return _die(
                f"the API user name {args.name!r} cannot be used with HTTP Basic: "
                "give a non-empty name without ':' or control characters"
            )
        if args.display_name is not None and _has_control(args.display_name):
            return _die("--display-name must not contain control characters")
        password = _read_password()
        if len(password) < 8:
            return _die("the password must have at least 8 characters")
        asyncio.run(_api_user_add(dsn, args.name, args.role, args.display_name, password))
        print(f"API user {args.name} ({args.role}) is ready for HTTP Basic")
        return 0
    if not asyncio.run(_api_user_disable(dsn, args.name)):
        return _die(f"no API user named {args.name}", 1)
    print(f"API user {args.name} is disabled")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.jwt_secret and not settings.jwt_public_key:
        return _die(
            "refusing to start: set TICKETING_JWT_SECRET (HS256) or TICKETING_JWT_PUBLIC_KEY "
            "(RS256/ES256 PEM) so tokens can be verified"
        )
    _require_db(settings)
    if not settings.redis_url:
        raise SettingsError("TICKETING_REDIS_URL is not set")
    from services.api.server import serve

    serve(settings, workers=args.workers)
    return 0


def cmd_worker(settings: Settings, _args: argparse.Namespace) -> int:
    from workers.main import run

    # arq logs every job at INFO; the projection tick runs each second. Keep warnings.
    logging.getLogger("arq.worker").setLevel(logging.WARNING)

    _require_db(settings)
    if not settings.redis_url:
        raise SettingsError("TICKETING_REDIS_URL is not set")
    run(settings)
    return 0


def cmd_projections(settings: Settings, _args: argparse.Namespace) -> int:
    from projections.rebuild import rebuild_all

    stats = asyncio.run(rebuild_all(_require_db(settings)))
    print(msgspec.json.encode(stats).decode())
    return 0


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    from services import audit

    _require_db(settings)
    if args.action == "verify":
        return int(audit.verify_main(settings))
    if args.ticket is not None and not 1 <= args.ticket <= MAX_ID:
        return _die(f"--ticket must be a ticket id from 1 to {MAX_ID}, not {args.ticket}")
    since = None
    if args.since:
        from datetime import UTC, datetime

        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            return _die(f"--since {args.since!r} is not an ISO 8601 time")
        if since.tzinfo is None:  # as the API reads a time without a zone: UTC, not local
            since = since.replace(tzinfo=UTC)
    return int(audit.export_main(settings, args.ticket, since))


def cmd_bench(_settings: Settings, args: argparse.Namespace) -> int:
    from bench.run import main as bench_main

    return int(bench_main(bench_argv(args)))


def bench_argv(args: argparse.Namespace) -> list[str]:
    """What ``ticketing bench`` passes on to ``bench.run.main``: every option it was given."""
    from bench.options import to_argv

    return to_argv(args)


def cmd_dev(settings: Settings, _args: argparse.Namespace) -> int:
    """Embedded servers where none is configured, migrate, then API and worker together."""
    from services.embedded import EmbeddedServers, EmbeddedUnavailable

    data_dir = Path(settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = _hold_data_dir(data_dir)
    if lock is None:
        return _die(
            f"another `ticketing dev` is running on {data_dir}: stop it first, or give this "
            "one its own TICKETING_DATA_DIR (and TICKETING_PORT)"
        )
    _stop_on_termination()
    # The worker's per-job lines (a catch-up every second) would bury the URL and token.
    logging.getLogger("arq.worker").setLevel(logging.WARNING)
    embedded = EmbeddedServers(data_dir)
    overrides: dict[str, object] = {}
    try:
        if not settings.database_url:
            print(f"starting embedded PostgreSQL under {data_dir / 'postgres'} ...", flush=True)
            overrides["database_url"] = embedded.start_postgres()
        if not settings.redis_url:
            print(f"starting embedded Redis under {data_dir / 'redis'} ...", flush=True)
            overrides["redis_url"] = embedded.start_redis()
        if not settings.jwt_secret and not settings.jwt_public_key:
            # A dev-only secret kept in the data directory, so tokens survive restarts.
            secret_file = data_dir / "jwt-secret"
            if not secret_file.exists():
                secret_file.write_text(secrets.token_urlsafe(48))
                secret_file.chmod(0o600)
            overrides["jwt_secret"] = secret_file.read_text().strip()
        settings = msgspec.structs.replace(settings, **overrides)
        return asyncio.run(_dev(settings, data_dir))
    except EmbeddedUnavailable as exc:
        return _die(str(exc))
    except _AskedToStop:
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        embedded.close()
        lock.close()


def _write_dev_env(settings: Settings, data_dir: Path) -> Path:
    """``<data dir>/env``: the settings this dev instance runs with, as shell assignments,
    so the other commands (token, audit, api-user, projections) can reach it. Owner-only:
    it holds the dev token secret."""
    path = data_dir / "env"
    values = {
        "TICKETING_DATABASE_URL": settings.database_url,
        "TICKETING_REDIS_URL": settings.redis_url,
        "TICKETING_JWT_SECRET": settings.jwt_secret,
        "TICKETING_JWT_PUBLIC_KEY": settings.jwt_public_key,
    }
    text = "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items() if v)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
    return path


def _hold_data_dir(data_dir: Path) -> IO[str] | None:
    """An exclusive lock on the data directory for this process's life, or None when
    another `dev` holds it: a second one would share its embedded servers and, exiting
    on the taken port, stop them under the first."""
    handle = (data_dir / "dev.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _stop_on_termination() -> None:
    """SIGTERM/SIGHUP stop `dev` like Ctrl-C, so the embedded servers are shut down too.

    The embedded PostgreSQL and Redis run in their own sessions: killing dev's process
    group does not reach them, and uvicorn re-raises a captured SIGTERM once it has shut
    down, which with the default handler ends the process before any cleanup runs.
    """
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, _asked_to_stop)


class _AskedToStop(KeyboardInterrupt):
    """A SIGTERM or SIGHUP: the stop a supervisor asks for, so `dev` exits 0 (Ctrl-C: 130)."""


def _asked_to_stop(signum: int, frame: object) -> None:
    raise _AskedToStop


async def _dev(settings: Settings, data_dir: Path) -> int:
    from services.db import migrate
    from services.tokens import issue_token

    assert settings.database_url
    applied = await migrate(settings.database_url)
    print(f"schema migrated ({len(applied)} new migration(s))")
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        "",
        "Ticketing service (dev)",
        f"  data directory : {data_dir}",
        f"  API            : {base}",
        f"  OpenAPI docs   : {base}/schema  (JSON: {base}/schema/openapi.json)",
    ]
    if settings.jwt_secret:
        token = issue_token(settings.jwt_secret, "admin", "admin", name="Dev Admin", ttl_s=86400)
        lines.append(f"  admin token    : {token}")
        lines.append(f"  try: curl -H 'Authorization: Bearer {token}' {base}/v1/tickets")
    env_file = _write_dev_env(settings, data_dir)
    lines.append(
        f"  other commands : set -a; . {env_file}; set +a   (then e.g. ticketing audit verify)"
    )
    print("\n".join(lines) + "\n", flush=True)
    tasks: list[asyncio.Task[None]] = []
    try:
        from services.api.server import serve_async

        tasks.append(asyncio.create_task(serve_async(settings), name="api"))
    except ImportError:
        print("(the HTTP API is not built in this checkout)")
    try:
        from workers.main import run_async

        tasks.append(asyncio.create_task(run_async(settings), name="worker"))
    except ImportError:
        print("(the worker is not built in this checkout)")
    if not tasks:
        return 0
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
    for t in done:
        t.result()
    return 0


# --- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ticketing", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("dev", help="zero-setup: embedded servers, migrate, API + worker").set_defaults(
        func=cmd_dev
    )
    s = sub.add_parser("serve", help="the HTTP API only")
    s.add_argument("--workers", type=int, default=None, help="ASGI worker processes")
    s.set_defaults(func=cmd_serve)
    sub.add_parser("worker", help="the arq worker only").set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="create/upgrade the schema (idempotent)").set_defaults(
        func=cmd_migrate
    )

    t = sub.add_parser("token", help="print a signed JWT for local use")
    t.add_argument("--sub", required=True)
    t.add_argument("--role", required=True, choices=["customer", "agent", "admin", "auditor"])
    t.add_argument("--name")
    t.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    t.set_defaults(func=cmd_token)

    u = sub.add_parser("api-user", help="HTTP Basic API users")
    usub = u.add_subparsers(dest="action", required=True)
    add = usub.add_parser("add", help="create or reset a user; password from stdin")
    add.add_argument("name")
    add.add_argument("--role", required=True)
    add.add_argument("--display-name")
    dis = usub.add_parser("disable", help="disable a user")
    dis.add_argument("name")
    u.set_defaults(func=cmd_api_user)

    pr = sub.add_parser("projections", help="read models")
    prs = pr.add_subparsers(dest="action", required=True)
    prs.add_parser("rebuild", help="rebuild every read model from the log, without downtime")
    pr.set_defaults(func=cmd_projections)

    a = sub.add_parser("audit", help="verify and export the event log")
    asub = a.add_subparsers(dest="action", required=True)
    asub.add_parser("verify", help="hash chains, gap-free versions, projections == replay")
    ex = asub.add_parser("export", help="events as JSON Lines")
    ex.add_argument("--ticket", type=int)
    ex.add_argument("--since", help="ISO 8601 time (UTC when it has no zone)")
    a.set_defaults(func=cmd_audit)

    from bench.options import add_arguments as add_bench_arguments

    b = sub.add_parser("bench", help="the benchmark suite (`--quick`: under 2 minutes)")
    add_bench_arguments(b)
    b.set_defaults(func=cmd_bench)
    return p


def _not_logged_as_json(record: logging.LogRecord) -> bool:
    """The plain root handler skips the service's own records once the API has given them
    their JSON handler (``configure_logging``): otherwise `dev` printed each one twice."""
    own = record.name == "ticketing" or record.name.startswith("ticketing.")
    return not (own and logging.getLogger("ticketing").handlers)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        logging.basicConfig(level=settings.log_level.upper(), format="%(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(_not_logged_as_json)
        return int(args.func(settings, args))
    except SettingsError as exc:
        return _die(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`ticketing audit export | head`): it has what it wanted;
        # point stdout at /dev/null so the interpreter's final flush does not fail too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        problem = _database_problem(exc)
        if problem is None:
            raise
        return _die(problem, 1)


def _database_problem(exc: BaseException) -> str | None:
    """A sentence for a database the command could not reach or use (None: not that)."""
    import socket

    import asyncpg

    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return f"database error: {exc}"
    # a Unix socket that is not there is a FileNotFoundError with no file name (opening a
    # missing file names it)
    no_socket = isinstance(exc, FileNotFoundError) and exc.filename is None
    if no_socket or isinstance(exc, ConnectionError | socket.gaierror | TimeoutError):
        return f"cannot connect (is the database at TICKETING_DATABASE_URL up?): {exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
