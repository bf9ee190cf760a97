"""Which lexemes a full-text query needs: the plan for walking ``ticket_search_terms``.

PostgreSQL parses the user's text (``websearch_to_tsquery('english', q)``, stemming and
stop words included); this module reads the tsquery's text form back, e.g.
``'printer' & !'fire' | 'invoic' <-> 'due'``, and works out a *cover*: groups of lexemes
such that every ticket the query matches contains every lexeme of at least one group.
Walking, newest first, the term-index rows of one lexeme per group (whichever is rarest)
then meets every match, and the full ``search @@ query`` check on each row walked keeps
exactly the matches. A query with no cover (``-printer``; ``a or -b``) is served another
way (see ``projections.queries``).

Pure functions, no IO. Anything this parser does not recognise gives no cover, never a
wrong one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class Lex(NamedTuple):
    lexeme: str
    exact: bool  # False for a prefix (``:*``) or weight-restricted (``:AB``) operand


class Not(NamedTuple):
    arg: Node


class Op(NamedTuple):
    kind: str  # "and", "phrase" (any <N>) or "or"
    left: Node
    right: Node


Node = Lex | Not | Op
Cover = tuple[tuple[str, ...], ...]

# More alternatives than this: a walk per alternative costs more than checking the newest
# tickets one by one (the summaries have no full-text index to fall back on).
MAX_GROUPS = 16


class TsqueryParseError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str, bool]]:
    """(kind, value, exact) per token; kind "lex" for an operand, else the operator."""
    out: list[tuple[str, str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "'":
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise TsqueryParseError("unterminated lexeme")
                c = text[i]
                if c == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        chars.append("'")
                        i += 2
                        continue
                    i += 1
                    break
                if c == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                    continue
                chars.append(c)
                i += 1
            exact = True
            if i < n and text[i] == ":":  # weights and/or prefix: not an exact lexeme
                i += 1
                while i < n and text[i] in "*ABCDabcd":
                    i += 1
                exact = False
            out.append(("lex", "".join(chars), exact))
        elif c in "!&|()":
            out.append((c, c, False))
            i += 1
        elif c == "<":
            j = text.find(">", i)
            inner = text[i + 1 : j] if j > 0 else ""
            if inner != "-" and not inner.isdigit():
                raise TsqueryParseError(f"unexpected operator at {i}")
            out.append(("<>", inner, False))
            i = j + 1
        else:
            raise TsqueryParseError(f"unexpected {c!r} at {i}")
    return out


class _Parser:
    """Precedence as PostgreSQL prints it: ! binds tightest, then <N>, then &, then |."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str, bool]:
        if self.i >= len(self.toks):
            raise TsqueryParseError("unexpected end")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node | None:
        if not self.toks:
            return None
        node = self.or_()
        if self.i != len(self.toks):
            raise TsqueryParseError("trailing input")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.peek() == "|":
            self.take()
            node = Op("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.phrase()
        while self.peek() == "&":
            self.take()
            node = Op("and", node, self.phrase())
        return node

    def phrase(self) -> Node:
        node = self.unary()
        while self.peek() == "<>":
            self.take()
            node = Op("phrase", node, self.unary())
        return node

    def unary(self) -> Node:
        kind, value, exact = self.take()
        if kind == "!":
            return Not(self.unary())
        if kind == "(":
            node = self.or_()
            if self.take()[0] != ")":
                raise TsqueryParseError("unbalanced parentheses")
            return node
        if kind == "lex":
            return Lex(value, exact)
        raise TsqueryParseError(f"unexpected {kind!r}")


def parse(text: str) -> Node | None:
    """The tree of a tsquery's text form; None for the empty query (only stop words)."""
    return _Parser(text).parse()


def required(node: Node) -> frozenset[str]:
    """Lexemes every match of ``node`` contains."""
    if isinstance(node, Lex):
        return frozenset({node.lexeme}) if node.exact else frozenset()
    if isinstance(node, Not):
        return frozenset()
    left, right = required(node.left), required(node.right)
    if node.kind == "or":
        return left & right
    return left | right  # and; a phrase matches only where both sides match


def cover(node: Node) -> Cover | None:
    """Groups of lexemes such that every match contains all of at least one group
    (the walk takes one lexeme per group); None when no such groups are known."""
    req = required(node)
    if req:
        return (tuple(sorted(req)),)
    if not isinstance(node, Op):
        return None  # a negation, or an inexact operand
    left, right = cover(node.left), cover(node.right)
    if node.kind != "or":
        options = [c for c in (left, right) if c is not None]
        return min(options, key=len) if options else None
    if left is None or right is None:
        return None
    merged = tuple(dict.fromkeys(left + right))
    return merged if len(merged) <= MAX_GROUPS else None


def _of_text(text: str, of_node: Callable[[Node], Cover | None]) -> Cover | None:
    """``of_node`` of a tsquery given as text; () for the empty query (it matches
    nothing), None for text this parser does not read."""
    try:
        node = parse(text)
    except TsqueryParseError:
        return None
    return () if node is None else of_node(node)


def plan(text: str) -> Cover | None:
    """The cover of a tsquery given as text; () for the empty query (it matches nothing)."""
    return _of_text(text, cover)


def _exact(node: Node) -> Cover | None:
    if isinstance(node, Lex):
        return ((node.lexeme,),) if node.exact else None
    if isinstance(node, Not) or node.kind == "phrase":
        return None
    left, right = _exact(node.left), _exact(node.right)
    if left is None or right is None:
        return None
    if node.kind == "or":
        groups = left + right
    else:  # and: every pairing of an alternative of each side
        groups = tuple(tuple(sorted(set(a) | set(b))) for a in left for b in right)
    groups = tuple(dict.fromkeys(groups))
    return groups if len(groups) <= MAX_GROUPS else None


def exact(text: str) -> Cover | None:
    """Groups of lexemes such that a vector matches the query exactly when it contains
    every lexeme of one group: for queries of plain lexemes joined by AND and OR only (no
    negation, phrase, prefix or weight), which the term index then answers alone, without
    checking any vector. None for any other query; () for the empty query."""
    return _of_text(text, _exact)
