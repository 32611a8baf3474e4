"""The golden set scored in process, for each pair of offline models: no local cloud, so the
models can be compared in seconds (`collections eval local` scores the deployed pair through
the real pipeline; each photo is analysed as the very JPEG rendition the pipeline's analyzer
makes, so the figures should be the pipeline's).

    .venv/bin/python bench/bench_golden.py

For each (analysis model, embedding model): every golden photo is analysed (the analyzer's own
rendition: downscaled to 1568 px on its longest edge, a JPEG at quality 85), its `document_text`
embedded as a document, each query embedded as a query and the photos ranked by cosine
(`evaluation.in_process`, which the quality gate in tests/unit/test_search_quality.py runs too).

Then the same for `bench/golden/heldout.json`, a second opinion that is never the gate: the
golden photos plus nine more from `skimage/data` and queries written apart from the golden
set's. With 16 photos, e5's similarities lie within about 0.01 of each other for a query whose
photo the analysis does not name, so a change picked because it raises the golden figure can
be the set's noise; if it lowers the held-out figure, it probably is.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _common import REPO, write_result

sys.path.insert(0, str(REPO / "src"))

NAME = "bench_golden"
HELDOUT = REPO / "bench" / "golden" / "heldout.json"
PAIRS = (("local-pillow-v1", "local-hash-v1"), ("local-mobilenet-v2", "local-hash-v1"),
         ("local-pillow-v1", "multilingual-e5-small-q4"),
         ("local-mobilenet-v2", "multilingual-e5-small-q4"))


def score_pair(analyzer_model: str, embedding_model: str, *,
               golden_path: Path | None = None) -> dict[str, object]:
    from collections_ops.services import evaluation

    report, indexed_s = evaluation.in_process(evaluation.golden_set(golden_path),
                                              analyzer_model=analyzer_model,
                                              embedding_model=embedding_model)
    figures = report.as_dict()
    return {"analyzer_model": analyzer_model, "embedding_model": embedding_model,
            "recall_at_1": figures["recall_at_1"], "recall_at_5": figures["recall_at_5"],
            "mrr": figures["mrr"], "queries": figures["queries"], "photos": figures["photos"],
            "index_s": round(indexed_s, 2), "misses": [
                {"query": r["query"], "expected": r["expected"], "ranked": r["ranked"][:3]}
                for r in figures["results"] if r["first_rank"] != 1]}


def main() -> int:
    rows = [score_pair(a, e) for a, e in PAIRS]
    heldout = [score_pair(a, e, golden_path=HELDOUT) for a, e in PAIRS]
    for title, scored in (("golden.json", rows), ("heldout.json (not the gate)", heldout)):
        print(f"  {title}")
        print(f"  {'analysis':20s} {'embedding':26s} recall@1 recall@5   MRR")
        for row in scored:
            print(f"  {row['analyzer_model']:20s} {row['embedding_model']:26s} "
                  f"{row['recall_at_1']:8.3f} {row['recall_at_5']:8.3f} {row['mrr']:5.3f}")
    best = rows[-1]
    write_result(NAME, {"target": "the local cloud's pair beats the hash baseline on MRR",
                        "met": best["mrr"] > rows[0]["mrr"], "pairs": rows,
                        "heldout_pairs": heldout})
    return 0


if __name__ == "__main__":
    sys.exit(main())
