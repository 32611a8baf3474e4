"""Text that arrives from outside (object keys, event fields, EXIF, a model's answer), made safe
to store, log and put in front of a person or a model.

Two different needs, two functions. An identifier (a key, an id, a correlation id) is either
acceptable or refused: changing it silently would make it name something else, so `identifier`
raises `TerminalError`. Free text (a camera model from EXIF, a summary from a model) is cleaned:
control and format characters (NUL, escape sequences, bidirectional overrides, zero-width
characters) are dropped, whitespace is collapsed and the length is bounded. PostgreSQL text
cannot hold NUL at all, so nothing unchecked reaches a row.
"""

from __future__ import annotations

import re
import unicodedata

from collections_core.errors import TerminalError

# C0 and C1 controls, DEL, and the Unicode format characters that change how text is shown
# (bidirectional overrides and isolates, zero-width joiners, the BOM) without being visible.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")
_KEEP_NEWLINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
    "\ufff9-\ufffb]")
_SPACES = re.compile(r"[ \t]+")


def has_unsafe(value: str) -> bool:
    """True when `value` holds a control or invisible format character."""
    return _UNSAFE.search(value) is not None


def identifier(value: object, *, what: str, max_chars: int, max_bytes: int | None = None) -> str:
    """`value` as a string, unchanged, or a TerminalError saying why it is refused."""
    if not isinstance(value, str):
        raise TerminalError(f"{what} is not a string")
    if not value:
        raise TerminalError(f"{what} is empty")
    if len(value) > max_chars:
        raise TerminalError(f"{what} is {len(value)} characters; the limit is {max_chars}")
    if max_bytes is not None and len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise TerminalError(f"{what} is longer than {max_bytes} bytes")
    if has_unsafe(value):
        raise TerminalError(f"{what} contains a control character",
                            hint="rename the object without control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise TerminalError(f"{what} is not valid UTF-8") from None
    return value


def clean(value: object, *, max_chars: int, keep_newlines: bool = False) -> str:
    """Free text made safe: unsafe characters dropped, spaces collapsed, length bounded."""
    text = unicodedata.normalize("NFC", str(value))
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    if keep_newlines:
        text = _KEEP_NEWLINES.sub("", text).replace("\r", "")
        text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
    else:
        text = _SPACES.sub(" ", _UNSAFE.sub(" ", text)).strip()
    if len(text) > max_chars:
        text = text[:max_chars - 1].rstrip() + "…"
    return text
