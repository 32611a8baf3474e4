"""The two ways an invocation can fail.

A *retryable* failure (database down, provider throttled, network blip) is raised out of the
handler so that Lambda's retry policy -- or the local dispatcher's -- tries again later. A
*terminal* failure (corrupt image, schema-invalid event, object gone) can never succeed, so the
handler sends the event to its dead-letter queue with the reason and returns: no retry loop.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class. `reason` is a one-line explanation safe to log and show an operator."""

    retryable = False

    def __init__(self, reason: str, *, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class TerminalError(PipelineError):
    retryable = False


class RetryableError(PipelineError):
    retryable = True


class ConfigurationError(TerminalError):
    """A missing setting or secret: retrying will not help until an operator fixes it."""


class ClaimRefused(TerminalError):
    """An event whose claims do not match the source of truth (the `items` or `analyses` row):
    forged, misrouted or for another environment. Refused before any model call or write."""
