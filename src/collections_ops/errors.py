"""The domain errors services raise: one sentence (`message`) plus what to do about it (`hint`).

A service says *what* went wrong by the class it raises (not found, not running, no
credentials, ...); it never chooses an exit code. The CLI maps each class to its documented exit
code in one table (`collections_ops.cli.exits`), so scripts can branch on codes that hold.
"""

from __future__ import annotations


class CollectionsError(Exception):
    """Base of every error the CLI shows as a sentence and a hint (exit 1 unless a subclass)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(CollectionsError):
    """The input is malformed: a bad value, a missing argument, an unknown name."""


class NotFound(CollectionsError):
    """The thing asked about does not exist (item, parameter, function version, file)."""


class NotReady(CollectionsError):
    """The environment is not deployed, or the local cloud is not running or unreachable."""


class CredentialsError(CollectionsError):
    """No credentials, no region, an expired session, or access denied."""


class ConfigError(CollectionsError):
    """Bad configuration: unknown environment, unreadable config file, missing secret."""


class DatabaseError(CollectionsError):
    """The database is unreachable or not migrated."""


class Unreachable(CollectionsError):
    """A provider or endpoint could not be reached (network, DNS, TLS): nothing was judged."""


class Stalled(CollectionsError):
    """A followed upload did not finish in time."""


class StageFailed(CollectionsError):
    """A followed upload failed in a stage."""


class VerifyFailed(CollectionsError):
    """A check found missing or inconsistent data."""


class Changes(CollectionsError):
    """`diff`/drift: what is deployed differs from what the app or the settings ask for."""


class Failed(CollectionsError):
    """An operation ran and failed, with no more specific kind: a tool (pip, npm) exited
    non-zero, AWS refused a request, a tuning run could not measure."""


class MissingExtra(CollectionsError):
    """An optional dependency group (`[infra]`, `[local]`) is not installed."""


def missing_extra(exc: ModuleNotFoundError, extra: str, purpose: str) -> MissingExtra:
    return MissingExtra(f"{purpose} needs the `{extra}` extra ({exc.name} is not installed)",
                        f"pip install 'collections-ops[{extra}]'")

