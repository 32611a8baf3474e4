"""The local cloud's state directory: what is running where (`state.json`, written atomically by
the daemon), the names of the files its parts leave there for each other, and the settings
they all run with.

The supervisor (`daemon`), its parts (`emulator`, `dispatcher`) and the CLI side (`manager`)
read each other's files; the names and the helpers they share live here, below all of them,
so each imports this module and none imports another for a file name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from collections_ops.pipeline import Environment, environment

STATE_FILE = "state.json"
EMULATOR_FILE = "emulator.json"  # written by the emulator once it answers
SUPERVISOR_FILE = "supervisor.json"  # the supervisor's parts and their restarts


def heartbeat_path(state_dir: Any, index: int) -> Any:
    """The heartbeat file of dispatcher process `index`, which the supervisor watches."""
    return state_dir / f"dispatcher-{index}.json"


def local_environment() -> Environment:
    """The `local` settings, with providers overridable for trying real ones locally:
    COLLECTIONS_ANALYZER_PROVIDER / _MODEL and COLLECTIONS_EMBEDDING_PROVIDER / _MODEL."""
    env = environment("local")
    overrides: dict[str, Any] = {
        field: os.environ[var] for field, var in (
            ("analyzer_provider", "COLLECTIONS_ANALYZER_PROVIDER"),
            ("analyzer_model", "COLLECTIONS_ANALYZER_MODEL"),
            ("embedding_provider", "COLLECTIONS_EMBEDDING_PROVIDER"),
            ("embedding_model", "COLLECTIONS_EMBEDDING_MODEL"),
        ) if os.environ.get(var)
    }
    return dataclasses.replace(env, **overrides) if overrides else env


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


def private_dir(path: Path, mode: int = 0o700) -> Path:
    """`path`, made if missing, open to its owner only (`mode`): the local cloud's folders
    hold every photo and message, its administrator's key and the database's URL, and any
    local user could read them from a 0755 folder. A folder made by an earlier version is
    closed too."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != mode:
        path.chmod(mode)
    return path


def state_dir_mode() -> int:
    """0700; 0711 when run as root, where the embedded PostgreSQL runs as a user of its own
    and must pass through the state directory to reach its data directory (it cannot list
    the directory, and what it holds is 0600 or in 0700 folders)."""
    return 0o711 if os.geteuid() == 0 else 0o700


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename, the file 0600 whatever the umask."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # one a crash left may be 0644: the new one is 0600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_state(state_dir: Path, state: LocalState) -> None:
    private_dir(state_dir, state_dir_mode())
    write_private(state_dir / STATE_FILE, json.dumps(asdict(state), indent=2))


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
