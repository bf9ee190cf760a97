"""Text rules shared by every command: lengths, control characters, HTML allow-list."""

from __future__ import annotations

import html as htmllib
import re

import nh3

from domain.errors import InvalidInput

# Everything below U+0020 but tab and newline (and CR, which we fold to newline), plus DEL
# and the C1 block: they corrupt logs, terminals and CSV exports downstream.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

ALLOWED_TAGS = {
    "a",
    "b",
    "blockquote",
    "br",
    "code",
    "div",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "hr",
    "i",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "u",
    "ul",
    "img",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt"}, "td": {"colspan"}}


def clean_text(value: str | None, field: str, *, min_len: int, max_len: int) -> str:
    """Normalise line endings and enforce length and control-character rules."""
    if value is None:
        if min_len > 0:
            raise InvalidInput(f"{field} is required", field=field)
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    if _CONTROL.search(text):
        raise InvalidInput(
            f"{field} contains control characters; only newline and tab are allowed", field=field
        )
    if len(text.strip()) < min_len:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(text) > max_len:
        raise InvalidInput(
            f"{field} is {len(text)} characters long; the limit is {max_len}", field=field
        )
    return text


def optional_text(value: str | None, field: str, *, max_len: int) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    return clean_text(value, field, min_len=1, max_len=max_len)


# an image that still shows something once sanitised (a javascript: source is dropped,
# leaving a bare <img>)
_SHOWN_IMAGE = re.compile(r"<img\b[^>]*\bsrc=", re.IGNORECASE)


def sanitise_html(html: str) -> str:
    """Keep an allow-list of tags and attributes; scripts, styles and handlers are dropped."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def clean_html(value: str, field: str) -> str:
    """``sanitise_html`` of a checked text, then the text rules again: the sanitiser
    decodes character references (``&#7;`` becomes a BEL), and what is left must still
    show something (text, or an image), not only empty tags and spaces."""
    out = sanitise_html(value).replace("\r\n", "\n").replace("\r", "\n")
    if _CONTROL.search(out):
        raise InvalidInput(
            f"{field} contains control characters (as HTML character references); only "
            "newline and tab are allowed",
            field=field,
        )
    text = htmllib.unescape(nh3.clean(out, tags=set()))
    if not text.strip() and not _SHOWN_IMAGE.search(out):
        raise InvalidInput(
            f"{field} has no visible content once disallowed HTML and empty tags are removed",
            field=field,
        )
    return out
