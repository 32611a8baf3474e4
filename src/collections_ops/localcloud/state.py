"""The local cloud's state file: what is running where. Written atomically by the daemon."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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


def client_factory(state: LocalState) -> Callable[[str], Any]:
    """`client(service)` for the local cloud's endpoint, each client made once (for code that
    runs outside the CLI's composition root: benchmarks, tests), as the local cloud's
    administrator."""
    from collections_ops.localcloud import iam

    session = iam.admin_session(state.state_dir, state.region)
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = session.client(service, endpoint_url=state.endpoint_url)
        return clients[service]

    return client


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
