"""The local cloud's durable store keeps SSM SecureString values encrypted at rest, as AWS keeps
them under KMS, and gives them back unchanged after a restart."""

from __future__ import annotations

import stat
from pathlib import Path

from collections_ops.localcloud.store import Store

PASSWORD = "c4n%ary@p:w"


def test_a_secure_string_is_never_on_disk_in_clear_and_is_restored(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    url = f"postgresql://app:{PASSWORD}@db:5432/collections"
    store.put_parameter("/collections/DATABASE_URL",
                        {"name": "/collections/DATABASE_URL", "description": "",
                         "value": url, "type": "SecureString"})
    store.put_parameter("/collections/plain",
                        {"name": "/collections/plain", "description": "", "value": "visible",
                         "type": "String"})

    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert PASSWORD.encode() not in on_disk
    assert b"visible" in on_disk  # a String parameter is not a secret
    key = tmp_path / "store" / "ssm.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    restarted = Store(tmp_path / "store")  # a new process reading the same folder
    values = {r["name"]: r["value"] for r in restarted.parameters()}
    assert values == {"/collections/DATABASE_URL": url, "/collections/plain": "visible"}


def test_a_record_sealed_under_another_name_is_not_restored(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.put_parameter("/a", {"name": "/a", "description": "", "value": "s",
                               "type": "SecureString"})
    (path,) = (tmp_path / "store" / "ssm").glob("*.json")
    path.write_text(path.read_text().replace('"/a"', '"/b"'))  # moved to another name
    assert list(Store(tmp_path / "store").parameters()) == []
