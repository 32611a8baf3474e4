"""The pieces that decide what is trusted: the masking function, identifier checks, text
cleaning, item ids for colliding names, and settings without silent defaults."""

from __future__ import annotations

import json

import pytest

from collections_core import events, log, text
from collections_core.config import REQUIRED, Settings
from collections_core.errors import ConfigurationError, TerminalError

# --------------------------------------------------------------------------- masking

@pytest.mark.parametrize(("url", "leaks"), [
    # unencoded: Python splits the user info at the last '@', libpq at the first
    ("postgresql://app:p%ss@w:rd@db.internal:5432/app", ["p%ss@w:rd", "p%ss"]),
    # encoded: the decoded password is what a driver may quote back
    ("postgresql://app:p%25ss%40w%3Ard@db.internal/app", ["p%25ss%40w%3Ard", "p%ss@w:rd"]),
    # a quote or backslash in it: a JSON line escapes them before it is masked
    ('postgresql://app:pa"ss\\word@db/app', ['pa"ss\\word', 'pa\\"ss\\\\word']),
], ids=["unencoded", "encoded", "json-escaped"])
def test_every_form_of_a_database_password_is_masked(url, leaks):
    log.register_secret(url)
    for leak in leaks:
        assert log.mask(f"error: {leak!s} here") == f"error: {log.MASK} here", leak
    assert log.mask(f"connecting to {url}") == f"connecting to {log.MASK}"
    assert log.mask(json.dumps({"message": url})) == json.dumps({"message": log.MASK})


def test_the_environment_helper_registers_secret_variables():
    log.register_environ({"DATABASE_URL": "postgresql://u:env-only-pw@h/db",
                          "VOYAGE_API_KEY": "pa-env-canary-1234", "HOME": "/root"})
    assert log.mask("env-only-pw pa-env-canary-1234 /root") == "**** **** /root"


def test_short_values_and_non_urls_are_not_split():
    log.register_secret("abc")  # too short to be a secret, would mask ordinary words
    log.register_secret("sk-plain-key-value")
    assert log.mask("abc sk-plain-key-value") == "abc ****"


# --------------------------------------------------------------------------- identifiers, text

@pytest.mark.parametrize("value", ["a\x00b", "a\x1bb", "a\nb", "a\u202eb", "a\u200bb", "a\x85b"])
def test_identifiers_with_control_or_invisible_characters_are_refused(value):
    with pytest.raises(TerminalError, match="control character"):
        text.identifier(value, what="the key", max_chars=100)


def test_identifiers_are_bounded_in_characters_and_bytes():
    with pytest.raises(TerminalError, match="is 11 characters; the limit is 10"):
        text.identifier("k" * 11, what="the key", max_chars=10)
    with pytest.raises(TerminalError, match="longer than 10 bytes"):
        text.identifier("é" * 6, what="the key", max_chars=10, max_bytes=10)
    assert text.identifier("café 写真 a+b=c", what="k", max_chars=20) == "café 写真 a+b=c"


def test_clean_drops_controls_collapses_spaces_and_bounds_length():
    assert text.clean("Canon\x00 \x1b[31mEOS\u202e  R5", max_chars=64) == "Canon [31mEOS R5"
    assert text.clean("x" * 100, max_chars=10) == "x" * 9 + "…"
    assert text.clean("one\r\n\n\n\ntwo\t\tthree\x00", max_chars=99, keep_newlines=True) == \
        "one\n\ntwo three"


@pytest.mark.parametrize(("value", "ok"), [
    ("0062D1A2B3C4D5E6F7", True), ("abc", True), ("ZZZZ", False), ("12-34", False),
    ("", False), ("F" * 65, False), (123, False)])
def test_sequencers_must_be_hex(value, ok):
    if ok:
        assert events.sequencer(value) == value
    else:
        with pytest.raises(TerminalError, match="not an S3 sequencer"):
            events.sequencer(value)


def test_sequencer_keys_compare_as_numbers():
    assert events.sequencer_key("FF") < events.sequencer_key("100")
    assert events.sequencer_key("0a") == events.sequencer_key("A")


@pytest.mark.parametrize("value", ["c" * 129, "has space", "semi;colon", "ctl\x07"])
def test_correlation_ids_are_short_plain_ids(value):
    with pytest.raises(TerminalError, match="the correlation id is not an id"):
        events.correlation_id(value)


def test_item_candidates_keep_the_guides_id_first():
    assert events.item_candidates("user123/test-image.jpg") == (
        "user123", ["test-image", "test-image.jpg", "test-image.jpg~" + _digest(
            "user123/test-image.jpg")])
    user, ids = events.item_candidates("u/album/2024/photo.png")
    assert (user, ids[:2]) == ("u", ["album/2024/photo", "album/2024/photo.png"])
    assert events.item_candidates("u/README")[1][0] == "README"


def _digest(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:8]


# --------------------------------------------------------------------------- settings

def test_settings_have_no_fallbacks_and_name_every_missing_variable(monkeypatch):
    for name in REQUIRED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMAGES_BUCKET", "b")
    with pytest.raises(ConfigurationError) as info:
        Settings.from_environ()
    missing = info.value.reason.removeprefix("the function's environment lacks ").split(", ")
    assert missing == [n for n in REQUIRED if n != "IMAGES_BUCKET"]
    assert "redeploy" in (info.value.hint or "")


def test_the_settings_read_are_exactly_what_the_definition_sets():
    from collections_ops import pipeline

    env = pipeline.common_env(pipeline.environment("dev"), account="1")
    assert set(REQUIRED) <= set(env)
    assert not set(REQUIRED) - set(env)
