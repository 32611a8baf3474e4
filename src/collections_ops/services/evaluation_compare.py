"""`collections eval --compare`: a candidate analysis or embedding model scored on the golden
set beside the environment's own, before anyone switches to it.

The environment's run is `evaluation.run`, through the real pipeline. The candidate runs in
this process on the same photos (each the analyzer's own JPEG rendition), with the
functions' own `vision` and `embedding` modules: its analyses and vectors stay in memory and
nothing is written to the live tables, so a candidate can be tried on a production
environment. What it shows: each item's analysis before and after (category, summary, tags
gained and lost), each query's rank before and after, the figures of both, and what switching
would cost (`estimate`: the offline providers cost nothing; a real provider's tokens are
estimated from the photo's size and the texts' lengths at the environment's price table,
`services.cost`). With a real provider the caller shows the estimate and asks before `run`
spends anything.

A candidate is named by its models: `local-pillow-v1` (an offline analysis model),
`local-hash-v1` (an offline embedding model), `anthropic:claude-haiku-4-5`,
`openai:gpt-4o-mini` or `voyage:voyage-3.5`, or two of them joined by `+` (one analysis, one
embedding). The half not named stays the environment's. A prompt file (`with_prompt`) makes
the candidate's real analysis model read that prompt instead of the analyzer's own
(`vision.PROMPT`), so a prompt change is scored before it ships.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from collections_ops import errors
from collections_ops.services import evaluation

ANALYSIS_PROVIDERS = ("anthropic", "openai")
EMBEDDING_PROVIDERS = ("voyage",)
LOCAL = "local"
# Estimates of a real provider's tokens per photo, for the cost shown before a run: the
# prompt with the tool or schema (~450 tokens), an analysis written (~400), and an image's
# tokens by its area (Anthropic's published rule: width x height / 750, at most 1568 px).
PROMPT_TOKENS = 450
OUTPUT_TOKENS = 400
IMAGE_PIXELS_PER_TOKEN = 750
CHARS_PER_TOKEN = 4  # an embedded text's tokens, from its length
DOCUMENT_CHARS = 800  # an analysis's document text, when no analysis is at hand yet
MAX_PROMPT_CHARS = 20_000


@dataclass(frozen=True)
class Candidate:
    analyzer_provider: str
    analyzer_model: str
    embedding_provider: str
    embedding_model: str
    prompt: str | None = None  # the analysis prompt tried; None: the analyzer's own
    prompt_name: str | None = None  # where it was read from, for the label

    @property
    def label(self) -> str:
        prompt = f" (prompt {self.prompt_name})" if self.prompt is not None else ""
        return f"{self.analyzer_model}{prompt} + {self.embedding_model}"

    @property
    def offline(self) -> bool:
        return self.analyzer_provider == LOCAL and self.embedding_provider == LOCAL


def parse(spec: str, *, current: Candidate) -> Candidate:
    """The candidate `spec` names, the rest as `current` (the environment's pair)."""
    vision, _embedding = evaluation.function_modules()
    from collections_core.embedding_rules import LOCAL_MODELS

    analyzer = (current.analyzer_provider, current.analyzer_model)
    embedder = (current.embedding_provider, current.embedding_model)
    named: set[str] = set()
    for part in (p.strip() for p in spec.split("+")):
        provider, _, model = part.rpartition(":")
        if not model:
            raise errors.UsageError(f"--compare {spec!r}: an empty model name")
        if provider in ANALYSIS_PROVIDERS or (not provider and model in vision.LOCAL_MODELS):
            half, value = "analysis", (provider or LOCAL, model)
        elif provider in EMBEDDING_PROVIDERS or (not provider and model in LOCAL_MODELS):
            half, value = "embedding", (provider or LOCAL, model)
        else:
            raise errors.UsageError(
                f"--compare {spec!r}: {part!r} is not a model eval knows; name an offline model "
                f"({', '.join((*vision.LOCAL_MODELS, *LOCAL_MODELS))}) or "
                "provider:model with provider one of "
                f"{', '.join((*ANALYSIS_PROVIDERS, *EMBEDDING_PROVIDERS))}")
        if half in named:
            raise errors.UsageError(f"--compare {spec!r} names two {half} models")
        named.add(half)
        if half == "analysis":
            analyzer = value
        else:
            embedder = value
    candidate = Candidate(*analyzer, *embedder)
    if candidate == current:
        raise errors.UsageError(f"--compare {spec!r} is the environment's own pair "
                                f"({current.label}): nothing to compare")
    return candidate


def with_prompt(candidate: Candidate, path: Path) -> Candidate:
    """`candidate` with its analysis asked with the prompt in the file at `path`. Only a real
    analysis model reads a prompt: an offline one is a usage error, as is an empty or
    over-long file."""
    if candidate.analyzer_provider == LOCAL:
        raise errors.UsageError(
            f"--prompt: the candidate's analysis, {candidate.analyzer_model}, is offline and "
            "reads no prompt", "name a real analysis model too: --compare anthropic:MODEL")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.UsageError(f"--prompt {path}: cannot be read ({type(exc).__name__})"
                                ) from None
    if not text or len(text) > MAX_PROMPT_CHARS:
        raise errors.UsageError(f"--prompt {path}: a prompt is 1 to {MAX_PROMPT_CHARS} "
                                f"characters; this one is {len(text)}")
    return replace(candidate, prompt=text, prompt_name=path.name)


# ------------------------------------------------------------------------------ the estimate


def estimate(candidate: Candidate, current: Candidate, golden: evaluation.GoldenSet, *,
             prices: Any) -> dict[str, Any]:
    """What the candidate's run costs, and what switching costs per 1,000 photos: the
    analysis is re-run only if it changes (a new embedding is made from the stored analyses),
    the embedding always. USD None: the price table has no price for the model."""
    from collections_ops.services import cost

    def usd(provider: str, model: str, input_tokens: int, output_tokens: int) -> float | None:
        return cost.token_cost(cost.Usage(model, input_tokens, output_tokens, provider), prices)

    sizes = [evaluation.rendered_photo(name).size for name in golden.photos.values()]
    photos = len(sizes)
    analyses = candidate.analyzer_model != current.analyzer_model or (
        candidate.analyzer_provider != current.analyzer_provider) or (
        candidate.prompt != current.prompt)
    image_tokens = sum(w * h // IMAGE_PIXELS_PER_TOKEN for w, h in sizes)
    vision, _embedding = evaluation.function_modules()
    prompt_tokens = PROMPT_TOKENS + (len(candidate.prompt or vision.PROMPT)
                                     - len(vision.PROMPT)) // CHARS_PER_TOKEN
    analysis_usd = usd(candidate.analyzer_provider, candidate.analyzer_model,
                       image_tokens + max(prompt_tokens, 0) * photos, OUTPUT_TOKENS * photos)
    embedded_tokens = (DOCUMENT_CHARS // CHARS_PER_TOKEN) * photos + sum(
        len(q.query) // CHARS_PER_TOKEN + 1 for q in golden.queries)
    embedding_usd = usd(candidate.embedding_provider, candidate.embedding_model,
                        embedded_tokens, 0)
    run_usd = _sum(analysis_usd, embedding_usd)
    per_photo = _sum(analysis_usd if analyses else 0.0, usd(
        candidate.embedding_provider, candidate.embedding_model,
        DOCUMENT_CHARS // CHARS_PER_TOKEN * photos, 0))
    return {"prices_as_of": prices.as_of, "photos": photos, "queries": len(golden.queries),
            "offline": candidate.offline, "run_usd": run_usd,
            "switch_usd_per_1000_photos": None if per_photo is None
            else round(per_photo / photos * 1000, 4),
            "reanalyses": analyses}


def _sum(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else round(sum(v or 0.0 for v in values), 6)


# ------------------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Calls:
    """How the candidate's models are called: `analyse(image, jpeg)` -> an analysis,
    `embed(texts, as_query)` -> vectors. `calls_for` builds them from the functions' modules;
    a test may build its own."""

    analyse: Callable[[Any, bytes], dict[str, Any]]
    embed: Callable[[list[str], bool], list[list[float]]]


def calls_for(candidate: Candidate, *, keys: Mapping[str, str],
              timeout_s: float = 60.0) -> Calls:
    """The candidate's models, called as the functions call them (`keys`: API keys by
    variable name, for the real providers only)."""
    import time

    vision, embedding = evaluation.function_modules()

    def budget() -> Callable[[], float]:
        ends = time.monotonic() + timeout_s
        return lambda: ends - time.monotonic()

    def analyse(image: Any, jpeg: bytes) -> dict[str, Any]:
        provider, model = candidate.analyzer_provider, candidate.analyzer_model
        prompt = vision.PROMPT if candidate.prompt is None else candidate.prompt
        if provider == LOCAL:
            found = vision.local_analysis(image, {"width": image.width, "height": image.height},
                                          model=model)
        elif provider == "anthropic":
            found = vision.anthropic_analysis(jpeg, api_key=keys["ANTHROPIC_API_KEY"],
                                              model=model, remaining_s=budget(),
                                              prompt=prompt).analysis
        else:
            found = vision.openai_analysis(jpeg, api_key=keys["OPENAI_API_KEY"], model=model,
                                           remaining_s=budget(), prompt=prompt).analysis
        return dict(vision.validate(found))

    def embed(texts: list[str], as_query: bool) -> list[list[float]]:
        model = candidate.embedding_model
        if candidate.embedding_provider == LOCAL:
            return [embedding.local_embed_as(t, model=model, as_query=as_query) for t in texts]
        return list(embedding.voyage_embed(texts, api_key=keys["VOYAGE_API_KEY"], model=model,
                                           input_type="query" if as_query else "document",
                                           remaining_s=budget()))

    return Calls(analyse, embed)


def keys_needed(candidate: Candidate) -> list[str]:
    """The API keys the candidate's real providers need, by variable name."""
    needed = []
    if candidate.analyzer_provider != LOCAL:
        needed.append(f"{candidate.analyzer_provider.upper()}_API_KEY")
    if candidate.embedding_provider != LOCAL:
        needed.append(f"{candidate.embedding_provider.upper()}_API_KEY")
    return needed


def run(golden: evaluation.GoldenSet, candidate: Candidate, calls: Calls, *,
        stored: Mapping[str, dict[str, Any] | None], reuse_stored: bool
        ) -> tuple[evaluation.Report, dict[str, dict[str, Any]]]:
    """The candidate's report and analyses. `stored`: the environment's analyses by item id;
    `reuse_stored`: the candidate keeps the environment's analysis model, so its vectors are
    made from them (as `reembed` would) and no analysis is paid for twice."""
    evaluation.function_modules()
    from collections_core.embedding_rules import document_text

    analyses: dict[str, dict[str, Any]] = {}
    for item_id, name in golden.photos.items():
        kept = stored.get(item_id)
        if reuse_stored and kept is not None:
            analyses[item_id] = kept
            continue
        jpeg = evaluation.rendition(name)  # the bytes the pipeline sends, not re-encoded
        analyses[item_id] = calls.analyse(evaluation.rendered_photo(name, jpeg), jpeg)
    ids = list(analyses)
    vectors = dict(zip(ids, calls.embed([document_text(_documented(analyses[i]))
                                         for i in ids], False), strict=True))

    def search(query: str, limit: int) -> list[str]:
        [q] = calls.embed([query], True)
        return sorted(vectors, key=lambda i: -_dot(q, vectors[i]))[:limit]

    report = evaluation.Report(model=candidate.embedding_model, user_id="-",
                               photos=len(golden.photos),
                               results=evaluation.score(golden, search))
    return report, analyses


def _documented(analysis: dict[str, Any]) -> dict[str, Any]:
    """A stored analysis row (no colours column) as `document_text` reads an analysis."""
    return {"colors": [], "description": "", "tags": [], **analysis}


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------------ the diff


def diff(baseline: evaluation.Report, candidate: evaluation.Report, *,
         before: Mapping[str, dict[str, Any] | None],
         after: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Per item, what the analysis says before and after; per query, its rank before and
    after (a smaller rank is better; None: not returned); the figures of both."""
    items = []
    for item_id, new in after.items():
        old = before.get(item_id) or {}
        old_tags, new_tags = list(old.get("tags") or []), list(new.get("tags") or [])
        items.append({
            "item_id": item_id,
            "category": [old.get("category"), new.get("category")],
            "summary": [old.get("summary"), new.get("summary")],
            "tags_added": [t for t in new_tags if t not in old_tags],
            "tags_removed": [t for t in old_tags if t not in new_tags],
            "changed": any(old.get(k) != new.get(k) for k in ("category", "summary", "tags"))})
    queries = []
    for old_r, new_r in zip(baseline.results, candidate.results, strict=True):
        change = None if old_r.first_rank is None or new_r.first_rank is None \
            else old_r.first_rank - new_r.first_rank
        queries.append({"query": old_r.query, "expected": old_r.expected,
                        "rank": [old_r.first_rank, new_r.first_rank], "better_by": change,
                        "nearest": [next(iter(old_r.ranked), None),
                                    next(iter(new_r.ranked), None)]})
    return {"figures": {"baseline": _figures(baseline), "candidate": _figures(candidate)},
            "items": items, "queries": queries}


def _figures(report: evaluation.Report) -> dict[str, float]:
    return {"recall_at_1": round(report.recall_at(1), 4),
            "recall_at_5": round(report.recall_at(5), 4), "mrr": round(report.mrr, 4)}
