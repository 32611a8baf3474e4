"""`collections reembed` on a populated local cloud: the stored analyses are embedded with a
second offline model, search is switched to it, and the old model's rows are dropped."""

from __future__ import annotations

import json

from tests.e2e.cli import run, upload_golden

E5, HASH = "multilingual-e5-small-q4", "local-hash-v1"


def test_reembed_activate_and_search_answers_from_the_new_model(cli_env, tmp_path):
    # GIVEN two photos through the pipeline, embedded with the local cloud's e5
    upload_golden(cli_env, tmp_path, "photos", {"chelsea": "chelsea.png", "rocket": "rocket.jpg"})

    # WHEN they are re-embedded with local-hash-v1 and it is activated
    done = run(cli_env, "reembed", "local", "--model", HASH, "--activate", "-o", "json")

    # THEN every analysis has a vector of it, it is active, e5 is retired but kept
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["embedded"] == 2 and outcome["pending"] == 0 and outcome["activated"]
    states = {m["model"]: (m["state"], m["rows"]) for m in outcome["models"]}
    assert states == {HASH: ("active", 2), E5: ("retired", 2)}
    assert "embedded" in done.stderr  # progress went to stderr, the document to stdout

    # and search embeds its query with the new model and answers from its rows
    found = run(cli_env, "search", "cat", "--env", "local", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert {h["item_id"] for h in hits} == {"chelsea", "rocket"}
    table = run(cli_env, "search", "cat", "--env", "local")
    assert f"({HASH})" in table.stdout, table.stdout

    # WHEN run again with --drop: nothing is embedded twice, e5's rows go
    again = run(cli_env, "reembed", "local", "--model", HASH, "--drop", "-o", "json")
    assert again.returncode == 0, again.stderr
    outcome = json.loads(again.stdout)
    assert outcome["embedded"] == 0 and outcome["dropped"] == [E5]
    assert [(m["model"], m["rows"]) for m in outcome["models"]] == [(HASH, 2)]


def test_reembed_with_an_unknown_model_is_a_usage_error(cli_env):
    result = run(cli_env, "reembed", "local", "--model", "no-such-model", "-o", "json")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unknown embedding model" in json.loads(result.stdout)["error"]
