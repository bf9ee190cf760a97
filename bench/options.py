"""The options of ``ticketing bench`` / ``python -m bench.run``, declared once.

Light on purpose (argparse only): ``services.cli`` builds its ``bench`` sub-command from
``add_arguments`` without importing the suite, and forwards the parsed options to
``bench.run.main`` as the argument list ``to_argv`` rebuilds.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="the under-2-minutes routine run")
    p.add_argument("--out", type=Path, help="folder for the report (printed at the end)")
    p.add_argument("--tickets", type=int, help="override the number of seeded tickets/events")
    p.add_argument("--seconds", type=float, help="override the seconds per HTTP operation")
    p.add_argument("--workers", type=int, help="API worker processes (default 1)")
    p.add_argument("--note", default="", help="a note for the report's history section")


def to_argv(args: argparse.Namespace) -> list[str]:
    """The argument list that ``add_arguments``' parser turns back into ``args``."""
    argv: list[str] = []
    if args.quick:
        argv.append("--quick")
    for flag, value in (
        ("--out", args.out),
        ("--tickets", args.tickets),
        ("--seconds", args.seconds),
        ("--workers", args.workers),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if args.note:
        argv += ["--note", args.note]
    return argv
