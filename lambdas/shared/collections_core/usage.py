"""The token usage a provider reports with each reply, read as untrusted data.

A usage figure is stored with the row the call produced and priced by `collections cost`; a
figure that is not a plausible count (missing, negative, not an integer, absurdly large) is
recorded as unknown (None), never guessed and never allowed to fail the stored result.
"""

from __future__ import annotations

from typing import Any, NamedTuple

MAX_TOKENS = 100_000_000  # far above any one request; anything larger is not a real count


class Usage(NamedTuple):
    """Tokens one call consumed: input (prompt, image, embedded text) and output."""

    input_tokens: int | None = None
    output_tokens: int | None = None


NONE = Usage()


def tokens(value: Any) -> int | None:
    """A token count from a reply, or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_TOKENS else None


def from_reply(usage: Any, input_field: str, output_field: str | None = None) -> Usage:
    """The counts in an SDK's usage object (attributes) or a plain dict."""
    if usage is None:
        return NONE

    def read(name: str) -> Any:
        return usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)

    return Usage(tokens(read(input_field)),
                 tokens(read(output_field)) if output_field else None)
