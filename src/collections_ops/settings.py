"""Operator settings: which environment by default, where the local cloud keeps its state.

Resolution order for each value: command-line option, environment variable, config file
(`./collections.toml`, then `~/.config/collections/config.toml`), built-in default.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collections_ops import errors
from collections_ops.pipeline import LOCAL_ENV


def _config_files() -> list[Path]:
    home = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return [Path.cwd() / "collections.toml", home / "collections" / "config.toml"]


def _file_settings() -> dict[str, Any]:
    for path in _config_files():
        if path.is_file():
            try:
                with path.open("rb") as fh:
                    return tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                # The message ends with "(at line N, column M)": it names the place.
                raise errors.ConfigError(f"{path}: {exc}", "fix the file, or remove it to use "
                                         "the defaults") from None
            except OSError as exc:
                raise errors.ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return {}


def default_state_root() -> Path:
    # Not under $HOME: the embedded PostgreSQL, run as root, opens up every parent folder
    # of its data directory to other users.
    import tempfile

    return Path(tempfile.gettempdir()) / f"collections-{os.getuid()}"


@dataclass(frozen=True)
class OperatorSettings:
    default_env: str
    state_root: Path

    def state_dir(self, env: str = LOCAL_ENV) -> Path:
        return self.state_root / env


def load() -> OperatorSettings:
    data = _file_settings()
    env = os.environ.get("COLLECTIONS_ENV") or data.get("env") or LOCAL_ENV
    state = os.environ.get("COLLECTIONS_STATE_DIR") or data.get("state_dir")
    for key, value in (("env", env), ("state_dir", state)):
        if value is not None and not isinstance(value, str):
            raise errors.ConfigError(f"config file: `{key}` must be a string, not {value!r}")
    return OperatorSettings(
        default_env=str(env),
        state_root=Path(state).expanduser() if state else default_state_root(),
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
