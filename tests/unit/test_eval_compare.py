"""`eval --compare`: a candidate model named, run in process on the golden photos, its
analyses and ranks diffed against the environment's, and the cost of switching estimated."""

from __future__ import annotations

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
