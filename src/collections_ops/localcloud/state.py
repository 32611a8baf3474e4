"""The local cloud's state file: what is running where. Written atomically by the daemon."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "state.json"


@dataclass
class LocalState:
    pid: int
    ready: bool
    endpoint_url: str
    region: str
    account: str
    database_url: str
    embedded_database: bool
    pg_pid: int | None
    images_bucket: str
    thumbnails_bucket: str
    functions: dict[str, str]
    queue_urls: dict[str, str] = field(default_factory=dict)
    dlq_urls: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    state_dir: str = ""


def write_state(state_dir: Path, state: LocalState) -> None:
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    os.replace(tmp, state_dir / STATE_FILE)


def read_state(state_dir: Path) -> LocalState | None:
    path = state_dir / STATE_FILE
    try:
        return LocalState(**json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None
