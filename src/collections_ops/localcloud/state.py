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


# What the operator's shell must not keep: a session token or a profile would be used with, or
# instead of, the administrator's key (a profile set in the environment makes the SDKs skip
# the key variables altogether).
OPERATOR_UNSET = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
                  "AWS_DEFAULT_PROFILE")


def operator_environment(state: LocalState) -> dict[str, str]:
    """The variables that point the `aws` CLI and the SDKs at this local cloud, signing as its
    administrator (what `collections env local` prints)."""
    from collections_ops.localcloud import iam

    creds = iam.admin_credentials(state.state_dir)
    return {"AWS_ENDPOINT_URL": state.endpoint_url,
            "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
            # Both: the aws CLI v2 and newer SDKs read AWS_REGION before AWS_DEFAULT_REGION.
            "AWS_DEFAULT_REGION": state.region, "AWS_REGION": state.region}
