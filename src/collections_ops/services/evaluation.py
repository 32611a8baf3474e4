"""How well search finds photos by content: the golden set, run through the real pipeline.

The golden set (`bench/golden/golden.json`) names photos that ship inside scikit-image
(`skimage/data/`: a cat, a cup of coffee, a rocket, ...) and queries, each with the photos a
person would expect it to find. The photos are read from the installed package's files, never
downloaded, and scikit-image itself is not imported (its data files are all that is needed).

`run` uploads every photo under a user of its own (a fresh id per run, so an earlier run's
items, or anyone else's, never compete and nothing is skipped as already analysed), follows them
through the thumbnail, analysis and embedding stages, then asks each query with the pipeline's
own query embedding and scores the rank of its expected photos among all the set's photos:
recall@1, recall@5 (the share of a query's expected photos in its first k) and MRR (the mean
of 1 / the rank of the first expected photo).

`in_process` scores the same set with the offline models called directly (the functions' own
`vision` and `embedding` modules, no local cloud): seconds instead of a minute, so the
benchmark can compare model pairs and a test can hold the figure recorded in
docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from collections_ops import errors, paths

PHOTOS_PACKAGE = "skimage"
PHOTOS_INSTALL = "pip install scikit-image"
_PACKAGE = Path(__file__).resolve().parents[1]
_GOLDEN_CANDIDATES = (_PACKAGE / "_bundled" / "bench" / "golden" / "golden.json",
                      _PACKAGE.parents[1] / "bench" / "golden" / "golden.json")
KS = (1, 5)


class GoldenPhotosMissing(errors.ConfigError):
    """scikit-image (which ships the golden photos) is not installed."""


@dataclass(frozen=True)
class GoldenQuery:
    query: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class GoldenSet:
    photos: dict[str, str]  # item id -> file name in skimage/data
    queries: tuple[GoldenQuery, ...]


@dataclass
class QueryResult:
    query: str
    expected: list[str]
    ranked: list[str]  # item ids, nearest first
    first_rank: int | None  # 1-based rank of the first expected photo; None: not returned

    def recall_at(self, k: int) -> float:
        return len(set(self.ranked[:k]) & set(self.expected)) / len(self.expected)


@dataclass
class Report:
    model: str
    user_id: str
    photos: int
    results: list[QueryResult] = field(default_factory=list)

    def recall_at(self, k: int) -> float:
        return sum(r.recall_at(k) for r in self.results) / len(self.results)

    @property
    def mrr(self) -> float:
        return sum(1 / r.first_rank for r in self.results if r.first_rank) / len(self.results)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "user_id": self.user_id, "photos": self.photos,
                "queries": len(self.results),
                **{f"recall_at_{k}": round(self.recall_at(k), 4) for k in KS},
                "mrr": round(self.mrr, 4),
                "results": [asdict(r) for r in self.results]}


def photos_dir() -> Path:
    """`skimage/data/` of the installed scikit-image, found without importing it."""
    spec = importlib.util.find_spec(PHOTOS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GoldenPhotosMissing("the golden photos ship with scikit-image, which is not "
                                  f"installed: {PHOTOS_INSTALL}", PHOTOS_INSTALL)
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def golden_photo(name: str) -> Path:
    """The path of one golden photo (`chelsea.png`)."""
    path = photos_dir() / name
    if not path.is_file():
        raise GoldenPhotosMissing(f"{path} is missing from the installed scikit-image",
                                  f"{PHOTOS_INSTALL} --force-reinstall")
    return path


def golden_set(path: Path | None = None) -> GoldenSet:
    """The golden set shipped with the package (or the one at `path`)."""
    found = path or next((p for p in _GOLDEN_CANDIDATES if p.is_file()), None)
    if found is None:
        raise errors.NotFound("the golden set bench/golden/golden.json is missing from this "
                              "install", "reinstall collections-ops")
    data = json.loads(found.read_text(encoding="utf-8"))
    queries = tuple(GoldenQuery(q["query"], tuple(q["expected"])) for q in data["queries"])
    unknown = sorted({e for q in queries for e in q.expected} - set(data["photos"]))
    if unknown:
        raise errors.ConfigError(f"the golden set's queries expect unknown photos: "
                                 f"{', '.join(unknown)}")
    return GoldenSet(dict(data["photos"]), queries)


def staged_photos(golden: GoldenSet, folder: Path) -> list[Path]:
    """Copies of the photos named by item id (`chelsea.png`), so the upload's key says the id."""
    staged = []
    for item_id, name in golden.photos.items():
        source = golden_photo(name)
        target = folder / f"{item_id}{source.suffix}"
        shutil.copyfile(source, target)
        staged.append(target)
    return staged


def score(golden: GoldenSet, search: Callable[[str, int], Sequence[str]]) -> list[QueryResult]:
    """Each query's ranking of the set's photos (`search(query, limit)` -> item ids)."""
    results = []
    for q in golden.queries:
        ranked = list(search(q.query, len(golden.photos)))
        first = next((i + 1 for i, item in enumerate(ranked) if item in q.expected), None)
        results.append(QueryResult(q.query, list(q.expected), ranked, first))
    return results


def run(golden: GoldenSet, *, model: str, upload_and_follow: Callable[[list[Path], str], None],
        search: Callable[[str, str, int], Sequence[str]]) -> Report:
    """Upload the golden photos under a fresh user, wait for the pipeline, score every query.

    `upload_and_follow(paths, user_id)` returns once every photo is embedded (or raises);
    `search(query, user_id, limit)` returns item ids, nearest first."""
    user_id = f"golden-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="collections-golden-") as folder:
        upload_and_follow(staged_photos(golden, Path(folder)), user_id)
    results = score(golden, lambda query, limit: search(query, user_id, limit))
    return Report(model=model, user_id=user_id, photos=len(golden.photos), results=results)


def in_process(golden: GoldenSet, *, analyzer_model: str,
               embedding_model: str) -> tuple[Report, float]:
    """The golden set scored with the offline models called in this process, and the seconds
    it took to analyse and embed the photos.

    Each photo is the analyzer's own JPEG rendition (`rendition`), analysed, validated and its
    `document_text` embedded as a document; each query is embedded as a query and the photos
    ranked by cosine (the vectors are unit length, so by dot product), as `search` ranks one
    user's embeddings exactly."""
    vision, embedding = function_modules()
    from collections_core.embedding_rules import document_text

    vectors: dict[str, list[float]] = {}
    started = time.perf_counter()
    for item_id, name in golden.photos.items():
        image = rendered_photo(name)
        analysis = vision.validate(vision.local_analysis(
            image, {"width": image.width, "height": image.height}, model=analyzer_model))
        vectors[item_id] = embedding.local_embed_as(
            document_text(analysis), model=embedding_model, as_query=False)
    indexed_s = time.perf_counter() - started

    def search(query: str, limit: int) -> list[str]:
        q = embedding.local_embed_as(query, model=embedding_model, as_query=True)
        return sorted(vectors, key=lambda i: -sum(
            a * b for a, b in zip(q, vectors[i], strict=True)))[:limit]

    report = Report(model=embedding_model, user_id="-", photos=len(golden.photos),
                    results=score(golden, search))
    return report, indexed_s


def rendition(name: str) -> bytes:
    """A golden photo's JPEG rendition, made by the analyzer's own `render_small` (downscaled,
    then a JPEG at the analyzer's quality): the very bytes the pipeline's analyzer sends a
    provider and analyses offline."""
    vision, _embedding = function_modules()
    from collections_core import images

    rendered, _source = images.render_small(golden_photo(name).read_bytes(),
                                            vision.MODEL_MAX_EDGE,
                                            quality=vision.RENDITION_QUALITY)
    return bytes(rendered.data)


def rendered_photo(name: str, data: bytes | None = None) -> Any:
    """A golden photo's `rendition` (or `data`, one already made) decoded to an RGB Pillow
    image, so that in-process figures are the pipeline's, JPEG artefacts included."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(rendition(name) if data is None else data)) as image:
        return image.convert("RGB")


def function_modules() -> tuple[Any, Any]:
    """lambdas/analyzer/vision.py and lambdas/embedder/embedding.py: eval runs the analyzer's
    offline analysis and the embedder's provider calls themselves (their shared code is the
    installed collections_core)."""
    for directory in (paths.lambda_code_dir("analyzer"), paths.lambda_code_dir("embedder")):
        if str(directory) not in sys.path:
            sys.path.insert(0, str(directory))
    import embedding
    import vision

    return vision, embedding
