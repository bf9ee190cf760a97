"""`ticketing bench` accepts every option of the suite and hands them all to bench.run.

Only the parsing and the forwarding are checked here: nothing is benchmarked.
"""

from __future__ import annotations

import argparse

import pytest

from bench.options import add_arguments
from services.cli import bench_argv, build_parser, cmd_bench


def _bench_parser() -> argparse.ArgumentParser:
    """The parser ``bench.run.main`` builds (same options, same module)."""
    p = argparse.ArgumentParser(prog="ticketing bench")
    add_arguments(p)
    return p


def test_no_options_is_the_full_run() -> None:
    args = build_parser().parse_args(["bench"])
    assert args.func is cmd_bench
    assert bench_argv(args) == []


def test_quick_alone_is_forwarded() -> None:
    assert bench_argv(build_parser().parse_args(["bench", "--quick"])) == ["--quick"]


def test_every_option_is_forwarded_and_reads_back_the_same() -> None:
    given = [
        "--quick",
        "--out",
        "/tmp/bench-report",
        "--tickets",
        "1000",
        "--seconds",
        "2.5",
        "--workers",
        "2",
        "--note",
        "after the index change",
    ]
    args = build_parser().parse_args(["bench", *given])
    forwarded = bench_argv(args)
    assert forwarded == given
    theirs = vars(_bench_parser().parse_args(forwarded))
    ours = {k: v for k, v in vars(args).items() if k not in ("command", "func")}
    assert theirs == ours


def test_options_in_any_order() -> None:
    args = build_parser().parse_args(["bench", "--out", "out/x", "--quick"])
    assert bench_argv(args) == ["--quick", "--out", "out/x"]


def test_unknown_or_malformed_options_are_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as bad:
        build_parser().parse_args(["bench", "--frobnicate"])
    assert bad.value.code == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--tickets", "many"])
    assert "--tickets" in capsys.readouterr().err
