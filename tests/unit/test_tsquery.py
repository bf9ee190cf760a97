"""Reading tsquery text back: which lexemes a keyword walk may rely on."""

from __future__ import annotations

import pytest

from projections.tsquery import MAX_GROUPS, Lex, Not, Op, exact, parse, plan, required


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'printer'", (("printer",),)),
        ("'printer' & 'invoic'", (("invoic", "printer"),)),
        ("'printer' <2> 'fire'", (("fire", "printer"),)),
        ("'printer' <-> 'fire' & !'smoke'", (("fire", "printer"),)),
        ("'printer' | 'invoic'", (("printer",), ("invoic",))),
        ("'printer' | 'printer'", (("printer",),)),
        ("'b' | 'c' <-> 'd' & !'f'", (("b",), ("c", "d"))),
        ("'printer' <-> 'fire' | !'fire' & 'invoic'", (("fire", "printer"), ("invoic",))),
        ("( 'a' | 'b' ) & 'c'", (("c",),)),
        ("( 'a' | 'b' ) & !'c'", (("a",), ("b",))),
        ("( 'a' & 'b' ) | ( 'a' & 'c' )", (("a",),)),
        ("!'printer' <-> 'fire'", (("fire",),)),
        ("'a''b' & 'c\\\\d'", (("a'b", "c\\d"),)),
        ("'x':* & 'y':AB & !( 'z' | 'w' ) <3> 'v'", (("v",),)),
        ("", ()),  # only stop words: matches nothing
    ],
)
def test_cover_names_lexemes_every_match_contains(text: str, expected: object) -> None:
    assert plan(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "!'printer'",
        "'printer' | !'invoic'",
        "!( 'a' & 'b' )",
        "'x':*",
        "'x':* | 'y'",
        "!'a' <-> !'b'",
        " | ".join(f"'w{i}'" for i in range(MAX_GROUPS + 1)),  # more alternatives than walks
    ],
)
def test_no_cover_when_nothing_is_required(text: str) -> None:
    assert plan(text) is None


@pytest.mark.parametrize("text", ["'unterminated", "'a' &", "( 'a'", "'a' 'b'", "a", "'a' <x> 'b'"])
def test_text_it_cannot_read_gives_no_cover(text: str) -> None:
    assert plan(text) is None


def test_precedence_follows_postgresql() -> None:
    assert parse("'a' | 'b' & 'c' <-> !'d'") == Op(
        "or",
        Lex("a", True),
        Op("and", Lex("b", True), Op("phrase", Lex("c", True), Not(Lex("d", True)))),
    )
    node = parse("'a' & ( 'b' | 'c' ) & 'd'")
    assert node is not None and required(node) == {"a", "d"}


def test_up_to_max_groups_alternatives_have_a_cover() -> None:
    words = [f"w{i}" for i in range(MAX_GROUPS + 1)]
    text = " | ".join(f"'{w}'" for w in words[:MAX_GROUPS])
    assert plan(text) == tuple((w,) for w in words[:MAX_GROUPS])
    assert plan(text + f" | '{words[-1]}'") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'printer'", (("printer",),)),
        ("'printer' & 'fire'", (("fire", "printer"),)),
        ("'a' | 'b' & 'c'", (("a",), ("b", "c"))),
        ("( 'a' | 'b' ) & 'c'", (("a", "c"), ("b", "c"))),
        ("'a' & 'a'", (("a",),)),
        ("", ()),
    ],
)
def test_exact_groups_are_what_a_match_contains_and_all_it_needs(
    text: str, expected: object
) -> None:
    assert exact(text) == expected


@pytest.mark.parametrize(
    "text", ["!'a'", "'a' & !'b'", "'a' <-> 'b'", "'a':*", "'a' | 'b' <-> 'c'", "'a' &"]
)
def test_no_exact_groups_when_a_vector_must_be_checked(text: str) -> None:
    assert exact(text) is None
