"""Thumbnailing a 12-megapixel photo: the project's `render_small` against the plain way.

The photo is generated deterministically (4000x3000: gradients, shapes, blur and noise, so it
compresses like a photograph; baseline JPEG, quality 90). Each repetition runs both methods,
alternating which goes first, so drift on the machine affects both alike.

    .venv/bin/python bench/bench_thumbnail.py [--reps 20]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from typing import Any

from _common import REPO, median, write_result

sys.path.insert(0, str(REPO / "lambdas" / "shared"))

from collections_core.images import render_small

NAME = "bench_thumbnail"
WIDTH, HEIGHT = 4000, 3000
MAX_EDGE = 512
QUALITY_OUT = 82  # render_small's default output quality; the plain way uses the same
TARGET_RATIO = 3.0


def make_photo(width: int = WIDTH, height: int = HEIGHT, seed: int = 12) -> bytes:
    """A deterministic photo-like JPEG: smooth gradients, soft shapes, sensor-like noise."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    sky = np.stack([
        90 + 110 * y + 30 * x,
        140 + 80 * y - 20 * x,
        220 - 90 * y + 10 * np.sin(6 * x),
    ], axis=-1)
    base = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8), "RGB")

    draw = ImageDraw.Draw(base)
    for _ in range(160):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        rx, ry = int(rng.integers(20, 600)), int(rng.integers(20, 450))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)
        else:
            draw.rectangle((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)
    for _ in range(400):  # thin lines: edges and texture, like branches or wires
        pts = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        draw.line(pts, fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
                  width=int(rng.integers(1, 6)))
    base = base.filter(ImageFilter.GaussianBlur(2.5))

    pixels = np.asarray(base, dtype=np.int16)
    noise = rng.normal(0.0, 6.0, size=pixels.shape).astype(np.int16)
    photo = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8), "RGB")
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=90, progressive=False, optimize=False)
    return out.getvalue()


def plain(data: bytes) -> tuple[int, int]:
    """The plain way: open, full decode, thumbnail, save."""
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.load()
    im.thumbnail((MAX_EDGE, MAX_EDGE))
    out = io.BytesIO()
    im.convert("RGB").save(out, format="JPEG", quality=QUALITY_OUT)
    return im.size


def project(data: bytes) -> tuple[int, int]:
    rendered, _source = render_small(data, MAX_EDGE)
    return rendered.width, rendered.height


def reference_draft_quarter(data: bytes) -> tuple[int, int]:
    """Not the project's code: what an explicit draft to the target box would cost (reference)."""
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.draft("RGB", (MAX_EDGE, MAX_EDGE))  # libjpeg scaled IDCT: 1/4 here (1000x750)
    im.thumbnail((MAX_EDGE, MAX_EDGE), reducing_gap=None)
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=QUALITY_OUT)
    return im.size


def reference_decode_floor(data: bytes) -> tuple[int, int]:
    """Decode only, at 1/8 scale: the entropy-decoding floor that no draft can go below."""
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.draft("RGB", (WIDTH // 8, HEIGHT // 8))
    im.load()
    return im.size


def reference_decode_full(data: bytes) -> tuple[int, int]:
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.load()
    return im.size


REFERENCES = {"draft_quarter_then_resize": reference_draft_quarter,
              "decode_only_full": reference_decode_full,
              "decode_only_1_8_floor": reference_decode_floor}


def run(reps: int) -> dict[str, Any]:
    from PIL import Image, features

    started = time.perf_counter()
    data = make_photo()
    generated_s = time.perf_counter() - started
    header = Image.open(io.BytesIO(data))
    assert header.size == (WIDTH, HEIGHT)
    progressive = bool(header.info.get("progressive") or header.info.get("progression"))

    sizes = {"plain": plain(data), "render_small": project(data)}  # warm-up, and a check
    methods = {"plain": plain, "render_small": project}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for rep in range(reps):
        order = list(methods) if rep % 2 == 0 else list(reversed(methods))
        for name in order:
            t0 = time.perf_counter()
            methods[name](data)
            times[name].append(time.perf_counter() - t0)

    med = {name: median(ts) for name, ts in times.items()}
    ratio = med["plain"] / med["render_small"]

    # Reference points (not part of the target): where the time goes, measured after the
    # main loop so they cannot disturb it.
    ref_times: dict[str, list[float]] = {name: [] for name in REFERENCES}
    for fn in REFERENCES.values():
        fn(data)
    for _ in range(reps):
        for name, fn in REFERENCES.items():
            t0 = time.perf_counter()
            fn(data)
            ref_times[name].append(time.perf_counter() - t0)
    ref_med = {name: round(median(ts), 5) for name, ts in ref_times.items()}
    return {
        "input": {"width": WIDTH, "height": HEIGHT, "bytes": len(data), "quality": 90,
                  "progressive": progressive, "generated_in_s": round(generated_s, 3)},
        "output_sizes": sizes,
        "reps": reps,
        "pillow": Image.__version__ if hasattr(Image, "__version__") else None,
        "libjpeg_turbo": bool(features.check("libjpeg_turbo")),
        "times_s": {name: [round(t, 5) for t in ts] for name, ts in times.items()},
        "median_s": {name: round(v, 5) for name, v in med.items()},
        "min_s": {name: round(min(ts), 5) for name, ts in times.items()},
        "speedup": round(ratio, 2),
        "reference_median_s": ref_med,
        "reference_speedup_draft_quarter": round(
            med["plain"] / ref_med["draft_quarter_then_resize"], 2),
        "target": f">= {TARGET_RATIO:g}x",
        "met": ratio >= TARGET_RATIO,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    result = run(max(10, args.reps))
    path = write_result(NAME, result)
    med = result["median_s"]
    print(f"thumbnail of a {WIDTH}x{HEIGHT} JPEG ({result['input']['bytes'] / 1e6:.1f} MB), "
          f"{result['reps']} interleaved reps each")
    print(f"  plain (full decode): median {med['plain'] * 1000:7.1f} ms")
    print(f"  render_small:        median {med['render_small'] * 1000:7.1f} ms")
    print(f"  speedup {result['speedup']:.2f}x (target {result['target']}): "
          f"{'met' if result['met'] else 'MISSED'}")
    ref = result["reference_median_s"]
    print(f"  reference: full decode only {ref['decode_only_full'] * 1000:.1f} ms, 1/8-scale "
          f"decode only (floor) {ref['decode_only_1_8_floor'] * 1000:.1f} ms, explicit 1/4 draft "
          f"+ resize {ref['draft_quarter_then_resize'] * 1000:.1f} ms "
          f"({result['reference_speedup_draft_quarter']:.2f}x)")
    print(f"  -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
