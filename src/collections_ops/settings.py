"""Operator settings: which environment by default, where the local cloud keeps its state, and
each environment's settings -- every value of the definition an operator may choose.

The settings file is `./collections.toml`, else `~/.config/collections/config.toml`:

    env = "dev"                       # the default environment
    state_dir = "/var/tmp/collections"

    [environments.dev]                # any settable field of `pipeline.Environment`
    architecture = "arm64"
    snapstart = true
    lambda_memory_analyzer = 2048
    reserved_concurrency = { analyzer = 5 }

    [environments.dev.prices]         # `collections cost` (docs/benchmarks.md)

Why `[environments.<env>]` and not `[env.<env>]`: `env` is already the default environment's
key, and TOML cannot make one key both a string and a table; `[environments.<env>.prices]`
was there first.

An environment's effective value of each setting comes from, first found wins (`resolve`):
  1. the command line (`collections deploy dev --set KEY=VALUE`, `--database`),
  2. the settings file's `[environments.<env>]`,
  3. the deployment record (`services/deployment.py`): what the last deploy deployed, and what
     `collections configure` changed since,
  4. the definition (`pipeline.ENVIRONMENTS`).
The file is above the record so that editing it is how an operator changes a setting; the
record is above the definition so that a value once deployed stays deployed when the file (or
the flag) no longer says it. Every deploy records what it deployed.

Everything is checked when read: an unknown key -- at the top, in `[environments]`, inside an
environment's table -- or a value of the wrong kind is a usage error naming the key and the
file (exit 2), never ignored.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from collections_ops import errors
from collections_ops.pipeline import (
    ARCHITECTURES,
    DATABASE_MODES,
    DEPLOYED_FUNCTIONS,
    ENVIRONMENTS,
    LOCAL_ENV,
    Environment,
    environment,
)

# Where a setting's value came from, in the order they win.
Source = Literal["flag", "file", "record", "definition"]
SOURCES: tuple[Source, ...] = ("flag", "file", "record", "definition")
SOURCE_WORDS: dict[Source, str] = {"flag": "command line", "file": "settings file",
                                   "record": "deployment record", "definition": "definition"}

TOP_LEVEL_KEYS = ("env", "state_dir", "prices", "environments")
PRICES_KEY = "prices"  # inside an environment's table: `collections cost`'s price table

# Lambda's own limits: a value outside them would fail halfway through a deploy.
TIMEOUT_S = (1, 900)
MEMORY_MB = (128, 10240)

# Fields of the definition an operator does not set here, and why. A new field of
# `pipeline.Environment` is either settable (in `_KINDS`) or listed here (a test checks it).
NOT_SETTABLE = {
    "name": "the environment's name is its key",
    "region": "the stacks are pinned to the definition's region",
    "account": "the account comes from the credentials (or `-c collections:account`)",
    "parameter_prefix": "parameter names are spelled in the definition",
    "database_vpc": "deploy with --subnet/--security-group (recorded)",
    "prices": "a table of its own: [environments.<env>.prices]",
}


def _int(low: int, high: int | None = None) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number, not {value!r}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be {low}-{high}, not {value}" if high is not None
                             else f"must be at least {low}, not {value}")
        return value
    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # TOML has no null: "none" (or "") clears an optional value.
    return lambda value: None if value in (None, "", "none") else check(value)


def _bool(value: Any) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, not {value!r}")
    return value


def _choice(options: Sequence[str]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, not {value!r}")
        return value
    return check


def _email(value: Any) -> str:
    text = _text(value)
    if "@" not in text or any(c.isspace() for c in text):
        raise ValueError(f"must be an email address, not {value!r}")
    return text


def _concurrency(value: Any) -> dict[str, int]:
    keys = [fn.key for fn in DEPLOYED_FUNCTIONS]
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a table of function = executions ({', '.join(keys)}), "
                         f"not {value!r}")
    out: dict[str, int] = {}
    for key, limit in value.items():
        if key not in keys:
            raise ValueError(f"unknown function {key!r} (one of {', '.join(keys)})")
        out[str(key)] = _int(0)(limit)
    return out


def _kinds() -> dict[str, Callable[[Any], Any]]:
    kinds: dict[str, Callable[[Any], Any]] = {}
    for fn in DEPLOYED_FUNCTIONS:
        kinds[fn.timeout_setting] = _int(*TIMEOUT_S)
        kinds[fn.memory_setting] = _int(*MEMORY_MB)
    kinds.update({
        "log_retention_days": _int(1),
        "analyzer_provider": _text, "analyzer_model": _text,
        "embedding_provider": _text, "embedding_model": _text,
        "thumbnail_size": _int(16, 4096),
        "thumbnail_expiry_days": _optional(_int(1)),
        "reserved_concurrency": _concurrency,
        "production": _bool,
        "database": _choice(DATABASE_MODES),
        "rds_proxy": _bool,
        "versions_to_keep": _int(2),
        "snapstart": _bool,
        "architecture": _choice(ARCHITECTURES),
        "alarm_email": _optional(_email),
    })
    return kinds


_KINDS = _kinds()
SETTABLE: tuple[str, ...] = tuple(_KINDS)
# What the local cloud runs is the definition's (its functions' memory and timeout change with
# `collections configure`, which its version history keeps): the file may not pretend otherwise.
LOCAL_SETTABLE: tuple[str, ...] = ()


def _unknown(key: str, where: str, known: Sequence[str]) -> errors.UsageError:
    from difflib import get_close_matches

    near = get_close_matches(key, known, n=1)
    hint = f"did you mean `{near[0]}`?" if near else f"known: {', '.join(known)}"
    return errors.UsageError(f"{where}: unknown setting `{key}`", hint)


def validate(values: Mapping[str, Any], *, where: str, env: str | None = None) -> dict[str, Any]:
    """`values` checked and normalized (key -> value); an unknown key or a bad value is a
    usage error naming the key and `where` it was found."""
    allowed = LOCAL_SETTABLE if env == LOCAL_ENV else SETTABLE
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _KINDS:
            raise _unknown(key, where, SETTABLE)
        if key not in allowed:
            raise errors.UsageError(
                f"{where}: `{key}` is not a setting of the local cloud, which runs the "
                "definition's settings", "`collections configure FUNCTION -e local --memory N "
                "--timeout S` changes a function's memory and timeout (kept across restarts)")
        try:
            out[key] = _KINDS[key](value)
        except ValueError as exc:
            raise errors.UsageError(f"{where}: `{key}` {exc}") from None
    return out


def parse_assignments(assignments: Sequence[str], *, env: str) -> dict[str, Any]:
    """`--set KEY=VALUE` (repeatable): the value read as TOML (`true`, `2048`, `"x"`; a bare
    word is a string), then checked as the file's would be."""
    raw: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise errors.UsageError(f"--set {item!r} is not KEY=VALUE",
                                    "e.g. --set architecture=arm64")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        raw[key.strip()] = value
    return validate(raw, where="--set", env=env)


# --------------------------------------------------------------------------- the file


def _config_files() -> list[Path]:
    home = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return [Path.cwd() / "collections.toml", home / "collections" / "config.toml"]


def _read_file() -> tuple[Path | None, dict[str, Any]]:
    for path in _config_files():
        if path.is_file():
            try:
                with path.open("rb") as fh:
                    return path, tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                # The message ends with "(at line N, column M)": it names the place.
                raise errors.ConfigError(f"{path}: {exc}", "fix the file, or remove it to use "
                                         "the defaults") from None
            except OSError as exc:
                raise errors.ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return None, {}


def _file_settings() -> dict[str, Any]:
    return _read_file()[1]


def _environment_tables(path: Path, data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each environment's settings in the file, checked (the price tables are left to
    `price_overrides`)."""
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise _unknown(key, str(path), TOP_LEVEL_KEYS)
    environments = data.get("environments", {})
    if not isinstance(environments, Mapping):
        raise errors.UsageError(f"{path}: `environments` must be a table of environments")
    out: dict[str, dict[str, Any]] = {}
    for name, table in environments.items():
        if name not in ENVIRONMENTS:
            raise errors.UsageError(f"{path}: unknown environment `{name}` in "
                                    f"[environments.{name}]", f"known: {', '.join(ENVIRONMENTS)}")
        if not isinstance(table, Mapping):
            raise errors.UsageError(f"{path}: `environments.{name}` must be a table")
        values = {k: v for k, v in table.items() if k != PRICES_KEY}
        out[name] = validate(values, where=f"{path} [environments.{name}]", env=name)
    return out


def default_state_root() -> Path:
    # Not under $HOME: the embedded PostgreSQL, run as root, opens up every parent folder
    # of its data directory to other users.
    import tempfile

    return Path(tempfile.gettempdir()) / f"collections-{os.getuid()}"


@dataclass(frozen=True)
class OperatorSettings:
    default_env: str
    state_root: Path
    # Each environment's table in the settings file, checked (without its prices).
    environments: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    file: Path | None = None  # the settings file read, if any

    def state_dir(self, env: str = LOCAL_ENV) -> Path:
        return self.state_root / env

    def file_settings(self, env: str) -> Mapping[str, Any]:
        return self.environments.get(env, {})


def load() -> OperatorSettings:
    path, data = _read_file()
    env = os.environ.get("COLLECTIONS_ENV") or data.get("env") or LOCAL_ENV
    state = os.environ.get("COLLECTIONS_STATE_DIR") or data.get("state_dir")
    for key, value in (("env", env), ("state_dir", state)):
        if value is not None and not isinstance(value, str):
            raise errors.ConfigError(f"config file: `{key}` must be a string, not {value!r}")
    return OperatorSettings(
        default_env=str(env),
        state_root=Path(state).expanduser() if state else default_state_root(),
        environments=_environment_tables(path, data) if path is not None else {},
        file=path,
    )


def price_overrides(env: str) -> list[tuple[str, dict[str, Any]]]:
    """The settings file's price tables for `env` (`collections cost`), in the order they
    apply -- `[prices]` for every environment, then `[environments.<env>.prices]` -- each with
    the table's name. Same shape as the built-in table (`pipeline.Prices`)."""
    data = _file_settings()
    tables: list[tuple[str, Any]] = [("[prices]", data.get("prices"))]
    environments = data.get("environments")
    if isinstance(environments, dict) and isinstance(environments.get(env), dict):
        tables.append((f"[environments.{env}.prices]", environments[env].get("prices")))
    out = []
    for name, table in tables:
        if table is None:
            continue
        if not isinstance(table, dict):
            raise errors.ConfigError(f"config file: {name} must be a table of prices")
        out.append((f"config file {name}", table))
    return out


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Setting:
    key: str
    value: Any
    source: Source

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "source": self.source}


@dataclass(frozen=True)
class Effective:
    """An environment as the operator's choices make it: the definition with each setting's
    winning value, and where each came from."""

    env: Environment
    settings: tuple[Setting, ...]

    def chosen(self) -> dict[str, Any]:
        """What the deployment record keeps: every value that is not the definition's."""
        return {s.key: s.value for s in self.settings if s.source != "definition"}

    def source(self, key: str) -> Source:
        return next(s.source for s in self.settings if s.key == key)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.settings]


def resolve(env: Environment | str, *, flags: Mapping[str, Any] | None = None,
            file: Mapping[str, Any] | None = None,
            recorded: Mapping[str, Any] | None = None) -> Effective:
    """The effective settings of `env` (the definition's environment, or its name): flags,
    then the file, then the record, then the definition (see the module's docstring). Each
    layer is checked; a recorded value this CLI does not know is left out (a newer CLI wrote
    it)."""
    defined = environment(env) if isinstance(env, str) else env
    layers: list[tuple[Source, Mapping[str, Any]]] = [
        ("flag", validate(flags or {}, where="--set", env=defined.name)),
        ("file", validate(file or {}, where="settings file", env=defined.name)),
        ("record", validate({k: v for k, v in (recorded or {}).items() if k in _KINDS},
                            where="deployment record"))]
    settings: list[Setting] = []
    for key in SETTABLE:
        source: Source = "definition"
        value = getattr(defined, key)
        for name, layer in layers:
            if key in layer:
                source, value = name, layer[key]
                break
        settings.append(Setting(key, value, source))
    chosen = {s.key: s.value for s in settings if s.source != "definition"}
    return Effective(dataclasses.replace(defined, **chosen) if chosen else defined,
                     tuple(settings))


def shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
    return "none" if value is None else str(value)
