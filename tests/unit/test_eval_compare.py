"""`eval --compare`: a candidate model named, run in process on the golden photos, its
analyses and ranks diffed against the environment's, and the cost of switching estimated."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collections_ops import errors
from collections_ops.pipeline import PRICES
from collections_ops.services import evaluation
from collections_ops.services import evaluation_compare as comparing

LOCAL_CLOUD = comparing.Candidate("local", "local-mobilenet-v2", "local",
                                  "multilingual-e5-small-q4")
GOLDEN = evaluation.GoldenSet(
    photos={"cat": "chelsea.png", "cup": "coffee.png", "rocket": "rocket.jpg"},
    queries=(evaluation.GoldenQuery("cat", ("cat",)),
             evaluation.GoldenQuery("espresso", ("cup",)),
             evaluation.GoldenQuery("space shuttle", ("rocket",))))


def test_a_candidate_is_named_by_its_models_and_keeps_the_other_half() -> None:
    assert comparing.parse("local-pillow-v1", current=LOCAL_CLOUD) == comparing.Candidate(
        "local", "local-pillow-v1", "local", "multilingual-e5-small-q4")
    assert comparing.parse("local-pillow-v1+local-hash-v1", current=LOCAL_CLOUD).label == \
        "local-pillow-v1 + local-hash-v1"
    real = comparing.parse("anthropic:claude-haiku-4-5+voyage:voyage-3.5", current=LOCAL_CLOUD)
    assert (real.analyzer_provider, real.embedding_provider, real.offline) == \
        ("anthropic", "voyage", False)
    assert comparing.keys_needed(real) == ["ANTHROPIC_API_KEY", "VOYAGE_API_KEY"]


@pytest.mark.parametrize("spec", ["gpt-9", "local-pillow-v1+local-mobilenet-v2",
                                  "local-mobilenet-v2", "cohere:embed-v4"])
def test_a_candidate_eval_cannot_run_is_a_usage_error(spec: str) -> None:
    with pytest.raises(errors.UsageError):
        comparing.parse(spec, current=LOCAL_CLOUD)


def test_the_candidate_runs_in_process_and_its_analyses_and_ranks_are_diffed() -> None:
    # GIVEN the environment's pair scored on three photos (as the pipeline would store them)
    baseline, stored = comparing.run(GOLDEN, LOCAL_CLOUD,
                                     comparing.calls_for(LOCAL_CLOUD, keys={}),
                                     stored={}, reuse_stored=False)
    candidate = comparing.parse("local-pillow-v1+local-hash-v1", current=LOCAL_CLOUD)

    # WHEN the candidate that sees only colours runs on the same photos
    scored, analyses = comparing.run(GOLDEN, candidate, comparing.calls_for(candidate, keys={}),
                                     stored=stored, reuse_stored=False)
    compared = comparing.diff(baseline, scored, before=stored, after=analyses)

    # THEN every item's analysis differs (no class names), the cat's tag is lost
    cat = next(i for i in compared["items"] if i["item_id"] == "cat")
    assert cat["changed"] and "cat" in cat["tags_removed"]
    assert "cat" in cat["summary"][0] and "cat" not in cat["summary"][1]
    # and each query's rank before and after is shown, with the figures of both pairs
    assert [q["rank"][0] for q in compared["queries"]] == [1, 1, 1]
    assert compared["figures"]["baseline"]["recall_at_1"] == 1.0
    assert compared["figures"]["candidate"]["mrr"] < 1.0
    for q in compared["queries"]:
        assert q["better_by"] == q["rank"][0] - q["rank"][1]


def test_an_offline_candidate_costs_nothing_and_a_real_one_is_estimated_first() -> None:
    offline = comparing.parse("local-hash-v1", current=LOCAL_CLOUD)
    free = comparing.estimate(offline, LOCAL_CLOUD, GOLDEN, prices=PRICES)
    assert (free["run_usd"], free["switch_usd_per_1000_photos"]) == (0.0, 0.0)

    claude = comparing.parse("anthropic:claude-haiku-4-5", current=LOCAL_CLOUD)
    priced = comparing.estimate(claude, LOCAL_CLOUD, GOLDEN, prices=PRICES)
    # 3 photos of about 0.4 MP: ~530 image + 450 prompt tokens in, 400 out, at $1 / $5 per M
    assert 0.003 < priced["run_usd"] < 0.02 and priced["reanalyses"]
    assert priced["switch_usd_per_1000_photos"] == pytest.approx(
        priced["run_usd"] / 3 * 1000, rel=0.01)

    unpriced = comparing.parse("anthropic:claude-unreleased", current=LOCAL_CLOUD)
    assert comparing.estimate(unpriced, LOCAL_CLOUD, GOLDEN, prices=PRICES)["run_usd"] is None


def test_a_real_provider_candidate_calls_the_providers_api_as_the_functions_do(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.providers import VALID_ANALYSIS, FakeProviders

    candidate = comparing.parse("anthropic:claude-haiku-4-5+voyage:voyage-3.5",
                                current=LOCAL_CLOUD)
    with FakeProviders(api_key="k-test") as fake:
        for name, url in (("ANTHROPIC_BASE_URL", fake.anthropic_base_url),
                          ("VOYAGE_BASE_URL", fake.voyage_base_url)):
            monkeypatch.setenv(name, url)
        calls = comparing.calls_for(candidate, keys={"ANTHROPIC_API_KEY": "k-test",
                                                     "VOYAGE_API_KEY": "k-test"})

        # WHEN the candidate runs on the three photos
        report, analyses = comparing.run(GOLDEN, candidate, calls, stored={},
                                         reuse_stored=False)

        # THEN each photo was analysed once, as a JPEG, by the named model; the analyses were
        # embedded as documents in one call and each query as a query
        messages = fake.messages.requests
        assert len(messages) == 3 and {m.body["model"] for m in messages} == \
            {"claude-haiku-4-5"}
        image = messages[0].body["messages"][0]["content"][0]
        assert image["source"]["media_type"] == "image/jpeg"
        # the pipeline's own rendition, byte for byte (not a re-encoded copy)
        assert base64.b64decode(image["source"]["data"]) == evaluation.rendition("chelsea.png")
        kinds = [e.body["input_type"] for e in fake.embeddings.requests]
        assert kinds == ["document", "query", "query", "query"]
    assert all(a["summary"] == VALID_ANALYSIS["summary"] for a in analyses.values())
    assert len(report.results) == 3


def test_a_new_embedding_of_a_real_providers_analyses_reuses_the_stored_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.providers import FakeProviders

    deployed = comparing.Candidate("anthropic", "claude-sonnet-4-6", "voyage", "voyage-3.5")
    candidate = comparing.parse("voyage:voyage-3.5-lite", current=deployed)
    stored = {item: {"category": "photo", "summary": f"a photo of {item}", "tags": [item]}
              for item in GOLDEN.photos}
    with FakeProviders() as fake:
        monkeypatch.setenv("VOYAGE_BASE_URL", fake.voyage_base_url)
        calls = comparing.calls_for(candidate, keys={"VOYAGE_API_KEY": "k"})

        _report, analyses = comparing.run(GOLDEN, candidate, calls, stored=stored,
                                          reuse_stored=True)

        # THEN no photo is analysed again (no Anthropic call is paid for twice)
        assert fake.messages.requests == []
        assert fake.embeddings.requests[0].body["model"] == "voyage-3.5-lite"
    assert analyses == stored
    assert not comparing.estimate(candidate, deployed, GOLDEN, prices=PRICES)["reanalyses"]


def test_a_real_provider_candidate_prints_its_cost_and_stops_unless_confirmed(
        tmp_path: Path) -> None:
    # GIVEN no terminal to ask on and no --yes
    env = {**os.environ, "COLLECTIONS_STATE_DIR": str(tmp_path), "COLLECTIONS_ENV": "local"}

    # WHEN eval is asked to compare a real provider
    result = subprocess.run([sys.executable, "-m", "collections_ops", "eval", "local",
                             "--compare", "anthropic:claude-haiku-4-5", "-o", "json"],
                            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=120)

    # THEN the estimate came first, on stderr, and nothing ran: the one JSON document is the
    # refusal, naming --yes
    assert result.returncode == 1, result.stdout + result.stderr
    assert "calls a real provider for 16 photos and 26 queries: about $" in result.stderr
    refused = json.loads(result.stdout)
    assert "not confirmed" in refused["error"] and "--yes" in refused["hint"]


def test_a_prompt_file_is_the_candidates_prompt_sent_to_anthropic_instead_of_the_analyzers(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.fakes.providers import FakeProviders

    vision, _embedding = evaluation.function_modules()
    # GIVEN an environment that analyses with Anthropic, and a prompt file to try
    deployed = comparing.Candidate("anthropic", "claude-haiku-4-5", "local",
                                   "multilingual-e5-small-q4")
    prompt = tmp_path / "prompt-v2.txt"
    prompt.write_text("Name every object you can see, then the setting.\n", encoding="utf-8")
    candidate = comparing.with_prompt(deployed, prompt)
    stored = {item: {"category": "photo", "summary": f"a photo of {item}", "tags": [item]}
              for item in GOLDEN.photos}

    with FakeProviders(api_key="k-test") as fake:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.anthropic_base_url)
        calls = comparing.calls_for(candidate, keys={"ANTHROPIC_API_KEY": "k-test"})

        # WHEN the candidate runs (the same model: only the prompt differs)
        _report, analyses = comparing.run(GOLDEN, candidate, calls, stored=stored,
                                          reuse_stored=False)

        # THEN every photo is analysed again, each request carrying the file's prompt and
        # not the analyzer's
        texts = [m.body["messages"][0]["content"][1]["text"] for m in fake.messages.requests]
    assert texts == ["Name every object you can see, then the setting."] * 3
    assert vision.PROMPT not in texts
    assert set(analyses) == set(GOLDEN.photos)
    assert candidate.label == "claude-haiku-4-5 (prompt prompt-v2.txt) + multilingual-e5-small-q4"
    assert comparing.estimate(candidate, deployed, GOLDEN, prices=PRICES)["reanalyses"]


def test_a_prompt_for_an_offline_analysis_or_an_empty_prompt_file_is_a_usage_error(
        tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Describe the photo.", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    claude = comparing.parse("anthropic:claude-haiku-4-5", current=LOCAL_CLOUD)

    with pytest.raises(errors.UsageError, match="offline"):
        comparing.with_prompt(LOCAL_CLOUD, prompt)
    with pytest.raises(errors.UsageError, match="1 to"):
        comparing.with_prompt(claude, empty)


def test_eval_takes_a_prompt_file_beside_a_real_analysis_model_and_estimates_it_first(
        tmp_path: Path) -> None:
    prompt = tmp_path / "prompt-v2.txt"
    prompt.write_text("Name every object you can see.", encoding="utf-8")
    env = {**os.environ, "COLLECTIONS_STATE_DIR": str(tmp_path), "COLLECTIONS_ENV": "local"}

    def eval_with(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "collections_ops", "eval", "local",
                               *args, "--prompt", str(prompt), "-o", "json"],
                              env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120)

    # WHEN the local cloud's offline analysis is given a prompt, and then a real model is
    offline = eval_with()
    real = eval_with("--compare", "anthropic:claude-haiku-4-5")

    # THEN the first is a usage error; the second names the prompt in its estimate and, with
    # no terminal and no --yes, stops before anything is spent
    assert offline.returncode == 2, offline.stdout + offline.stderr
    assert "reads no prompt" in json.loads(offline.stdout)["error"]
    assert real.returncode == 1, real.stdout + real.stderr
    assert "claude-haiku-4-5 (prompt prompt-v2.txt)" in real.stderr
    assert "not confirmed" in json.loads(real.stdout)["error"]
