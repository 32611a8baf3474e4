"""The local cloud's state directory: what is running where (`state.json`, written atomically by
the daemon), the names of the files its parts leave there for each other, and the settings
they all run with.

The supervisor (`daemon`), its parts (`emulator`, `dispatcher`) and the CLI side (`manager`)
read each other's files; `StateDir` names every one of them and the helpers they share live
here, below all of them, so each imports this module and none imports another for a file name
(or spells one).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, overload

from collections_ops.pipeline import Environment, environment


class _Entry:
    """One file or folder of the state directory: `StateDir().<attribute>` is its path."""

    def __init__(self, name: str, what: str) -> None:
        self.name, self.what = name, what

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.attribute = attribute

    @overload
    def __get__(self, obj: None, owner: type) -> _Entry: ...
    @overload
    def __get__(self, obj: StateDir, owner: type) -> Path: ...

    def __get__(self, obj: StateDir | None, owner: type) -> Path | _Entry:
        return self if obj is None else obj.root / self.name


class _Numbered(_Entry):
    """A file each dispatcher process has: `StateDir().<attribute>(n)`; `<n>` in `name`."""

    @overload  # type: ignore[override]
    def __get__(self, obj: None, owner: type) -> _Numbered: ...
    @overload
    def __get__(self, obj: StateDir, owner: type) -> Callable[[int], Path]: ...

    def __get__(self, obj: StateDir | None,
                owner: type) -> Callable[[int], Path] | _Numbered:
        if obj is None:
            return self
        root = obj.root
        return lambda n: root / self.name.replace("<n>", str(int(n)))


class StateDir:
    """The local cloud's state directory (`<state root>/local`): every file and folder its
    parts leave there for each other, named here once. The table in docs/local-cloud.md
    ("What the state directory holds") is checked against `entries()`."""

    state = _Entry("state.json", "what runs where, once the local cloud is ready "
                   "(supervisor; `status`, every command)")
    supervisor = _Entry("supervisor.json", "the supervisor's parts, pids and restarts")
    heartbeat = _Entry("heartbeat", "every dispatcher's heartbeat summed (supervisor)")
    emulator = _Entry("emulator.json", "written by the emulator once it answers: endpoint, "
                      "resources, what it restored, the code fingerprint")
    port = _Entry("port", "the emulator's port, kept so endpoints stay valid across restarts")
    daemon_lock = _Entry("daemon.lock", "held by the one supervisor of this directory")
    start_lock = _Entry("start.lock", "held by `deploy local` while it starts the supervisor")
    log = _Entry("daemon.log", "the log of the supervisor and all its parts")
    restarts_acknowledged = _Entry("restarts-acknowledged.json",
                                   "restart counts `repair` has acknowledged")
    credentials = _Entry("credentials.json", "the administrator's key and each function "
                         "role's session (0600)")
    database_credentials = _Entry("database-credentials.json", "the database owner's and each "
                                  "function role's password (0600)")
    pgdata = _Entry("pgdata/", "the embedded PostgreSQL's data directory")
    store = _Entry("store/", "the durable store: S3 objects, SQS messages, SSM parameters, "
                   "log events, published Lambda versions (`store/lambda`)")
    code_stamp = _Entry("code.json", "the code stamp: which package each function's `live` "
                        "runs (the dispatchers reload when it changes)")
    code_stamp_lock = _Entry("code.json.lock", "taken by whoever updates the code stamp")
    code = _Entry("code/", "each published package unpacked, `<function>/<version>/`, which "
                  "the dispatchers import")
    concurrency = _Entry("concurrency/", "reserved-concurrency slots shared by the "
                         "dispatcher processes")
    dispatcher_heartbeat = _Numbered("dispatcher-<n>.json", "dispatcher process n's "
                                     "heartbeat, every 0.5 s")
    dispatcher_journal = _Numbered("dispatcher-<n>.journal.json", "the messages dispatcher "
                                   "process n holds, handed back after a crash")

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @property
    def lambda_history(self) -> Path:
        """Every published version's package and settings, under the store."""
        return self.store / "lambda"

    @classmethod
    def entries(cls) -> list[_Entry]:
        return [v for v in vars(cls).values() if isinstance(v, _Entry)]

    def __repr__(self) -> str:
        return f"StateDir({str(self.root)!r})"


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
    write_private(StateDir(state_dir).state, json.dumps(asdict(state), indent=2))


def read_state(state_dir: Path) -> LocalState | None:
    path = StateDir(state_dir).state
    try:
        return LocalState(**json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None
