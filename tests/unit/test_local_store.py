"""The local cloud's durable store keeps SSM SecureString values encrypted at rest, as AWS keeps
them under KMS, and gives them back unchanged after a restart."""

from __future__ import annotations

import stat
from pathlib import Path

from collections_ops.localcloud.aws.store import Store

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


def _modes(root: Path) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {"dirs": set(), "files": set()}
    for path in [root, *root.rglob("*")]:
        found["dirs" if path.is_dir() else "files"].add(stat.S_IMODE(path.stat().st_mode))
    return found


def test_every_file_of_the_store_is_its_owners_only(tmp_path: Path) -> None:
    # GIVEN a store holding an object, a message, a parameter and log events
    store = Store(tmp_path / "store")
    store.put_object("images", "u1/photo.jpg", b"jpeg", {"metadata": {}}).commit()
    store.put_message("uploads", "m1", {"body": "{}"})
    store.put_parameter("/p", {"name": "/p", "description": "", "value": "v", "type": "String"})
    store.append_log("/aws/lambda/f", "s", [{"timestamp": 1, "message": "m"}])
    store.put_parameter("/s", {"name": "/s", "description": "", "value": "v",
                               "type": "SecureString"})
    # THEN no other user can read or list any of it
    assert _modes(tmp_path / "store") == {"dirs": {0o700}, "files": {0o600}}


def test_a_store_an_earlier_version_left_open_is_closed_when_opened(tmp_path: Path) -> None:
    # GIVEN a store written with 0755 folders and 0644 files
    Store(tmp_path / "store").put_message("uploads", "m1", {"body": "{}"})
    for path in [tmp_path / "store", *(tmp_path / "store").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    # WHEN the local cloud opens it
    Store(tmp_path / "store")
    # THEN it is its owner's only
    assert _modes(tmp_path / "store") == {"dirs": {0o700}, "files": {0o600}}


def test_the_state_directory_and_its_state_file_are_the_owners_only(tmp_path: Path) -> None:
    from collections_ops.localcloud.state import (
        LocalState,
        read_state,
        state_dir_mode,
        write_state,
    )

    state_dir = tmp_path / "local"
    state_dir.mkdir(mode=0o755)
    state_dir.chmod(0o755)
    state = LocalState(pid=1, ready=True, endpoint_url="http://127.0.0.1:1", region="r",
                       account="1", database_url="postgresql://u:secret@h/d",
                       embedded_database=True, pg_pid=None, images_bucket="i",
                       thumbnails_bucket="t", functions={})
    write_state(state_dir, state)
    # (0711 as root: the embedded PostgreSQL, a user of its own, passes through to pgdata)
    assert stat.S_IMODE(state_dir.stat().st_mode) == state_dir_mode() in (0o700, 0o711)
    assert stat.S_IMODE((state_dir / "state.json").stat().st_mode) == 0o600
    assert read_state(state_dir) == state


def test_an_object_write_taken_back_leaves_the_previous_object_whole(tmp_path: Path) -> None:
    # GIVEN an object kept
    store = Store(tmp_path / "store")
    store.put_object("images", "u1/a%41 b.jpg", b"first", {"etag": "1"}).commit()
    # WHEN a new version is written and then taken back (its notification could not be kept)
    store.put_object("images", "u1/a%41 b.jpg", b"second", {"etag": "2"}).undo()
    # THEN the store holds the first, under the very same key, and nothing else
    [(record, body)] = list(Store(tmp_path / "store").objects())
    assert (record["key"], record["etag"], body.read_bytes()) == ("u1/a%41 b.jpg", "1", b"first")
    assert sorted(p.suffix for p in (tmp_path / "store" / "s3").rglob("*.*")) == [".bin",
                                                                                ".json"]
    # AND a first write taken back leaves nothing at all
    store.put_object("images", "u1/new.jpg", b"new", {"etag": "3"}).undo()
    assert [r["key"] for r, _ in store.objects()] == ["u1/a%41 b.jpg"]


def test_what_a_crash_left_mid_write_is_tidied_and_the_kept_object_stays(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.put_object("images", "u1/p.jpg", b"kept", {"etag": "1"}).commit()
    store.put_object("images", "u1/p.jpg", b"newer", {"etag": "2"})  # never committed
    folder = next((tmp_path / "store" / "s3").iterdir())
    (folder / "0123.bin").write_bytes(b"orphan body")  # a body whose record never came
    assert store.tidy_objects() == 3  # the orphan, the old body, the old record's copy
    [(record, body)] = list(store.objects())
    assert (record["etag"], body.read_bytes()) == ("2", b"newer")
    assert len(list(folder.iterdir())) == 2


def test_a_record_of_an_earlier_version_is_read_with_its_body(tmp_path: Path) -> None:
    import json

    store = Store(tmp_path / "store")
    store.put_object("images", "u1/p.jpg", b"x", {}).commit()
    [meta] = (tmp_path / "store" / "s3").rglob("*.json")
    record = json.loads(meta.read_text())
    (meta.parent / record.pop("body")).rename(meta.with_suffix(".bin"))
    meta.write_text(json.dumps({"bucket": "images", "key": "u1/p.jpg", "metadata": {}}))
    assert store.tidy_objects() == 0
    [(kept, body)] = list(store.objects())
    assert kept["key"] == "u1/p.jpg" and body.read_bytes() == b"x"
