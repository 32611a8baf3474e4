"""The golden set scored in process, for each pair of offline models: no local cloud, so the
models can be compared in seconds (`collections eval local` scores the deployed pair through
the real pipeline; the figures differ only by the pipeline's downscaling before analysis).

    .venv/bin/python bench/bench_golden.py

For each (analysis model, embedding model): every golden photo is analysed (the image
downscaled to 1568 px on its longest edge as the pipeline renders it), its `document_text`
embedded as a document, each query embedded as a query and the photos ranked by cosine.
"""

from __future__ import annotations

import sys
import time

from _common import REPO, write_result

for _p in (REPO / "src", REPO / "lambdas" / "shared", REPO / "lambdas" / "analyzer",
           REPO / "lambdas" / "embedder"):
    sys.path.insert(0, str(_p))

NAME = "bench_golden"
PAIRS = (("local-pillow-v1", "local-hash-v1"), ("local-mobilenet-v2", "local-hash-v1"),
         ("local-pillow-v1", "multilingual-e5-small-q4"),
         ("local-mobilenet-v2", "multilingual-e5-small-q4"))
RENDER_EDGE = 1568


def score_pair(analyzer_model: str, embedding_model: str) -> dict[str, object]:
    from PIL import Image

    import embedding
    import vision
    from collections_ops.services import evaluation

    golden = evaluation.golden_set()
    vectors: dict[str, list[float]] = {}
    started = time.perf_counter()
    for item_id, name in golden.photos.items():
        with Image.open(evaluation.golden_photo(name)) as image:
            rgb = image.convert("RGB")
        rgb.thumbnail((RENDER_EDGE, RENDER_EDGE))
        analysis = vision.validate(vision.local_analysis(
            rgb, {"width": rgb.width, "height": rgb.height}, model=analyzer_model))
        vectors[item_id] = embedding.local_embed_as(embedding.document_text(analysis),
                                                    model=embedding_model, as_query=False)
    indexed_s = time.perf_counter() - started

    def search(query: str, limit: int) -> list[str]:
        q = embedding.local_embed_as(query, model=embedding_model, as_query=True)
        scored = sorted(vectors, key=lambda i: -sum(a * b for a, b in zip(q, vectors[i],
                                                                           strict=True)))
        return scored[:limit]

    report = evaluation.Report(model=embedding_model, user_id="-", photos=len(golden.photos),
                               results=evaluation.score(golden, search))
    figures = report.as_dict()
    return {"analyzer_model": analyzer_model, "embedding_model": embedding_model,
            "recall_at_1": figures["recall_at_1"], "recall_at_5": figures["recall_at_5"],
            "mrr": figures["mrr"], "queries": figures["queries"], "photos": figures["photos"],
            "index_s": round(indexed_s, 2)}


def main() -> int:
    rows = [score_pair(a, e) for a, e in PAIRS]
    print(f"  {'analysis':20s} {'embedding':26s} recall@1 recall@5   MRR")
    for row in rows:
        print(f"  {row['analyzer_model']:20s} {row['embedding_model']:26s} "
              f"{row['recall_at_1']:8.3f} {row['recall_at_5']:8.3f} {row['mrr']:5.3f}")
    best = rows[-1]
    write_result(NAME, {"target": "the local cloud's pair beats the hash baseline on MRR",
                        "met": best["mrr"] > rows[0]["mrr"], "pairs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
