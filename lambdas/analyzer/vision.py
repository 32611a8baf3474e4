"""Vision analysis providers and the schema every analysis must satisfy before it is stored.

- `anthropic`: Claude through the real `anthropic` SDK, structured output forced through a tool
  whose input schema is `ANALYSIS_SCHEMA`.
- `openai`: optional, through the real `openai` SDK with a JSON-schema response format.
- `local`: offline and deterministic, two models. `local-mobilenet-v2` (the local cloud's
  default) names what the photo shows with an ImageNet classifier (`classifier`: MobileNetV2 in
  numpy) and adds what Pillow measures; `local-pillow-v1` describes only what Pillow can
  measure -- size, orientation, colours, brightness, EXIF, how flat or busy the image is -- and
  needs nothing beyond Pillow (the recorded mode of `tune` runs it in the deployed functions).

Each provider's SDK is imported only when that provider is used. The remote providers return
the analysis with the token usage the provider reported for the call that produced it
(`collections_core.usage`); the local provider reports none.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any, NamedTuple

from collections_core import retry, text
from collections_core.errors import ConfigurationError, TerminalError
from collections_core.usage import NONE, Usage, from_reply

CATEGORIES = ("photo", "screenshot", "document", "illustration", "graphic", "other")
PROMPT_VERSION = "2026-11-1"
MODEL_MAX_EDGE = 1568  # Anthropic's recommended longest edge; larger images are downscaled
RENDITION_QUALITY = 85  # the JPEG quality of the rendition every provider analyses

ANALYSIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": list(CATEGORIES)},
        "summary": {"type": "string", "minLength": 1, "maxLength": 500},
        "description": {"type": "string", "maxLength": 4000},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 25},
        "colors": {"type": "array", "items": {"type": "string", "maxLength": 40},
                   "maxItems": 10},
        "text_content": {"type": ["string", "null"], "maxLength": 4000},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["category", "summary", "description", "tags", "colors", "confidence"],
    "additionalProperties": False,
}

PROMPT = (
    "Analyze this image for a personal collection. Record a category, a one-sentence summary, "
    "a detailed description, up to 15 short lowercase tags, the dominant colour names, any "
    "legible text (or null), and your confidence from 0 to 1. Describe only what is visible."
)


_MULTILINE_FIELDS = ("description", "text_content")


class Analysed(NamedTuple):
    """A provider's analysis (not yet validated) and the usage it reported for it."""

    analysis: dict[str, Any]
    usage: Usage = NONE


def _cleaned(analysis: dict[str, Any]) -> dict[str, Any]:
    """A model's strings are untrusted text (it reads text in the image, EXIF included):
    control and invisible format characters are dropped before the length checks, so nothing
    unprintable is stored, logged or embedded. Lengths are then checked, not truncated."""
    out: dict[str, Any] = {}
    for name, value in analysis.items():
        keep = name in _MULTILINE_FIELDS
        if isinstance(value, str):
            out[name] = text.clean(value, max_chars=100_000, keep_newlines=keep)
        elif isinstance(value, list):
            out[name] = [text.clean(v, max_chars=100_000) if isinstance(v, str) else v
                         for v in value]
        else:
            out[name] = value
    return out


def validate(analysis: Any) -> dict[str, Any]:
    """Check an analysis against ANALYSIS_SCHEMA; a TerminalError names the first problem."""
    if not isinstance(analysis, dict):
        raise TerminalError("the analysis is not a JSON object")
    cleaned = _cleaned(analysis)
    if cleaned != analysis:
        analysis = cleaned
    props = ANALYSIS_SCHEMA["properties"]
    missing = [k for k in ANALYSIS_SCHEMA["required"] if k not in analysis]
    if missing:
        raise TerminalError(f"the analysis is missing {', '.join(missing)}")
    unknown = [k for k in analysis if k not in props]
    if unknown:
        raise TerminalError(f"the analysis has unexpected fields: {', '.join(unknown)}")
    for name, value in analysis.items():
        _check_field(name, value, props[name])
    return analysis


def _check_field(name: str, value: Any, spec: dict[str, Any]) -> None:
    types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "null": lambda v: v is None,
    }
    if not any(checks[t](value) for t in types):
        raise TerminalError(f"analysis field {name} should be {' or '.join(types)}")
    if isinstance(value, str):
        if len(value) < spec.get("minLength", 0) or len(value) > spec.get("maxLength", 10**9):
            raise TerminalError(f"analysis field {name} has a bad length ({len(value)})")
        if "enum" in spec and value not in spec["enum"]:
            raise TerminalError(f"analysis field {name} is {value!r}, not one of {spec['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool) and not (
        spec.get("minimum", float("-inf")) <= value <= spec.get("maximum", float("inf"))
    ):
        raise TerminalError(f"analysis field {name} is out of range")
    if isinstance(value, list):
        if len(value) > spec.get("maxItems", 10**9):
            raise TerminalError(f"analysis field {name} has too many items")
        for item in value:
            _check_field(f"{name}[]", item, spec["items"])


# --------------------------------------------------------------------------- local provider

# Chromatic names only: a colour with little chroma is named by its lightness (`_GREYS`), so
# a grey photo is "grey" and "dark grey", never the nearest hue ("dark green").
_NAMED_COLOURS = {
    "red": (200, 30, 30), "maroon": (128, 0, 0),
    "orange": (240, 140, 20), "yellow": (240, 220, 40), "olive": (128, 128, 0),
    "green": (40, 160, 60), "dark green": (20, 80, 30), "teal": (0, 128, 128),
    "sky blue": (120, 180, 235), "blue": (30, 70, 200), "navy": (0, 0, 110),
    "purple": (128, 40, 160), "pink": (240, 150, 190), "brown": (130, 80, 40),
    "beige": (225, 205, 165),
}
_GREYS = ((45, "black"), (100, "dark grey"), (165, "grey"), (220, "light grey"),
          (256, "white"))
_MIN_CHROMA = 28  # max - min of the channels below which a colour is a grey


def _colour_name(rgb: tuple[int, int, int]) -> str:
    if max(rgb) - min(rgb) < _MIN_CHROMA:
        lightness = sum(rgb) / 3
        return next(name for bound, name in _GREYS if lightness < bound)
    return min(_NAMED_COLOURS, key=lambda n: sum(
        (a - b) ** 2 for a, b in zip(_NAMED_COLOURS[n], rgb, strict=True)))


def measure(image: Any) -> dict[str, Any]:
    """What Pillow can say about an RGB image (already downscaled).

    Per-pixel figures are computed per distinct colour (`getcolors`, weighted by count) rather
    than pixel by pixel in Python: the same values, an order of magnitude faster.
    """
    from PIL import ImageFilter, ImageStat

    small = image.copy()
    small.thumbnail((128, 128))
    stat = ImageStat.Stat(small)
    brightness = sum(stat.mean) / 3 / 255
    n_pixels = small.width * small.height
    distinct_colours: list[tuple[int, tuple[int, int, int]]] = small.getcolors(n_pixels)
    # HSV saturation, as colorsys.rgb_to_hsv computes it: (max - min) / max, 0 for black.
    saturation = sum(count * (max(rgb) - min(rgb)) / max(rgb)
                     for count, rgb in distinct_colours if max(rgb)) / n_pixels
    palette = small.quantize(colors=5, method=2)
    counts = sorted(palette.getcolors() or [], reverse=True)
    raw_palette = palette.getpalette() or []
    colours: list[str] = []
    for _count, index in counts:
        rgb = tuple(raw_palette[index * 3:index * 3 + 3])
        name = _colour_name((rgb[0], rgb[1], rgb[2])) if len(rgb) == 3 else "grey"
        if name not in colours:
            colours.append(name)
    # The share of the distinct colours the image could have: a greyscale image has at most
    # 256, so its count is judged against that, or every grey photo would count as a graphic.
    greyscale = all(rgb[0] == rgb[1] == rgb[2] for _count, rgb in distinct_colours)
    distinct = len(distinct_colours) / (min(n_pixels, 256) if greyscale else n_pixels)
    edges = ImageStat.Stat(small.convert("L").filter(ImageFilter.FIND_EDGES)).mean[0] / 255
    return {"brightness": brightness, "saturation": saturation, "colours": colours,
            "distinct_ratio": distinct, "edge_density": edges}


def _category(m: dict[str, Any]) -> str:
    if m["brightness"] > 0.75 and m["saturation"] < 0.12 and m["edge_density"] > 0.04:
        return "document"
    if m["distinct_ratio"] < 0.15 and m["edge_density"] > 0.03:
        return "screenshot"
    if m["distinct_ratio"] < 0.08:
        return "graphic"
    return "photo"


PILLOW_MODEL = "local-pillow-v1"
CLASSIFIER_MODEL = "local-mobilenet-v2"
LOCAL_MODELS = (CLASSIFIER_MODEL, PILLOW_MODEL)


def local_analysis(image: Any, facts: dict[str, Any], *,
                   model: str = PILLOW_MODEL) -> dict[str, Any]:
    """The offline analysis of `image` by one of LOCAL_MODELS."""
    if model == PILLOW_MODEL:
        return measured_analysis(image, facts)
    if model == CLASSIFIER_MODEL:
        try:
            import recognition
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                f"the offline classifier needs {exc.name}, which is not installed: "
                f"pip install {exc.name}", hint="pip install -e '.[local]'") from None

        small = recognition.small_copy(image)
        sized = {**facts, "width": facts.get("width") or image.width,
                 "height": facts.get("height") or image.height}
        return recognition.recognised_analysis(
            image, measured_analysis(small, sized, recognised=True), small=small)
    raise ConfigurationError(f"unknown local analysis model {model!r}",
                             hint=f"ANALYZER_MODEL is one of {', '.join(LOCAL_MODELS)}")


def measured_analysis(image: Any, facts: dict[str, Any], *,
                      recognised: bool = False) -> dict[str, Any]:
    """What Pillow measures, worded as an analysis (`local-pillow-v1`); `recognised`: a
    classifier's findings will be added, so the description does not say "no vision model"."""
    m = measure(image)
    category = _category(m)
    width, height = facts.get("width") or image.width, facts.get("height") or image.height
    shape = "square" if abs(width - height) <= 0.05 * max(width, height) else (
        "landscape" if width > height else "portrait")
    tone = "bright" if m["brightness"] > 0.65 else "dark" if m["brightness"] < 0.3 else "balanced"
    vivid = "vivid" if m["saturation"] > 0.45 else "muted" if m["saturation"] < 0.15 else "natural"
    colours = m["colours"][:5]
    # EXIF is whatever the file says: cleaned, bounded, and quoted as a claim, not a fact.
    camera = text.clean(facts["camera"], max_chars=64) if facts.get("camera") else None
    summary = (f"A {shape} {category}, {width}x{height}, mostly {' and '.join(colours[:2])}"
               f"{', camera reported by EXIF: ' + json.dumps(camera) if camera else ''}.")
    description = (
        f"Measured offline from the pixels{'' if recognised else ' (no vision model)'}: "
        f"{tone} exposure, {vivid} colour, "
        f"edge density {m['edge_density']:.2f}, distinct-colour ratio {m['distinct_ratio']:.2f}. "
        f"Dominant colours: {', '.join(colours)}."
    )
    tags = [category, shape, tone, vivid, *colours[:3]]
    if camera:
        tags.append("exif")
    return {
        "category": category, "summary": summary[:500], "description": description,
        "tags": list(dict.fromkeys(tags)), "colors": colours, "text_content": None,
        "confidence": 0.3,
    }


# --------------------------------------------------------------------------- remote providers


def _attempt_errors(exc: Exception, provider: str) -> Exception:
    """Map an SDK error to Retry (try again) or a terminal error."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    if name in ("APITimeoutError", "APIConnectionError", "Timeout", "ConnectError"):
        return retry.Retry(f"{provider}: {name}")
    if status in (408, 409, 429) or (isinstance(status, int) and status >= 500):
        response = getattr(exc, "response", None)
        after = retry.parse_retry_after(
            response.headers.get("retry-after") if response is not None else None)
        return retry.Retry(f"{provider} answered {status}", after)
    if status in (401, 403):
        return ConfigurationError(f"{provider} rejected the API key ({status})",
                                  hint=f"check the {provider.upper()}_API_KEY secret")
    if status is not None:
        return TerminalError(f"{provider} refused the request ({status}): {_message(exc)}")
    return TerminalError(f"{provider} call failed: {name}")


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:200]
    return str(exc)[:200]


def anthropic_analysis(jpeg: bytes, *, api_key: str, model: str, remaining_s: Callable[[], float],
                       base_url: str | None = None, prompt: str = PROMPT) -> Analysed:
    """Anthropic's analysis of `jpeg` (`prompt`: the analyzer's own unless `eval --compare`
    tries another)."""
    import anthropic

    client = anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0)
    tool = {"name": "record_analysis", "description": "Record the image analysis.",
            "input_schema": ANALYSIS_SCHEMA}
    image_block = {"type": "image", "source": {
        "type": "base64", "media_type": "image/jpeg",
        "data": base64.b64encode(jpeg).decode("ascii")}}

    request: dict[str, Any] = {
        "model": model, "max_tokens": 1500, "tools": [tool],
        "tool_choice": {"type": "tool", "name": "record_analysis"},
        "messages": [{"role": "user", "content": [image_block,
                                                  {"type": "text", "text": prompt}]}],
    }

    def attempt(timeout: float) -> Analysed:
        try:
            message = client.with_options(timeout=timeout).messages.create(**request)
        except anthropic.APIError as exc:
            raise _attempt_errors(exc, "anthropic") from None
        except json.JSONDecodeError:
            raise retry.Retry("anthropic returned a body that is not JSON") from None
        if not isinstance(message, anthropic.types.Message):
            # A 200 that is not JSON (a proxy's error page) comes back as a plain string.
            raise retry.Retry("anthropic returned a body that is not a message")
        if getattr(message, "stop_reason", None) == "max_tokens":
            raise TerminalError("anthropic's analysis was cut off (max_tokens)")
        for block in message.content:
            if getattr(block, "type", None) == "tool_use":
                # Messages API: usage.input_tokens / output_tokens. No prompt caching is asked
                # for, so no cache_creation / cache_read tokens are billed.
                return Analysed(dict(block.input),  # type: ignore[union-attr]
                                from_reply(message.usage, "input_tokens", "output_tokens"))
        raise TerminalError("anthropic returned no structured analysis")

    return with_budget(attempt, remaining_s)


def openai_analysis(jpeg: bytes, *, api_key: str, model: str, remaining_s: Callable[[], float],
                    base_url: str | None = None, prompt: str = PROMPT) -> Analysed:
    """OpenAI's analysis of `jpeg` (`prompt` as for `anthropic_analysis`)."""
    import openai

    client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0)
    data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    request: dict[str, Any] = {
        "model": model,
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "analysis", "schema": ANALYSIS_SCHEMA, "strict": False}},
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": data_url}}]}],
    }

    def attempt(timeout: float) -> Analysed:
        try:
            response = client.with_options(timeout=timeout).chat.completions.create(**request)
        except openai.APIError as exc:
            raise _attempt_errors(exc, "openai") from None
        except json.JSONDecodeError:
            raise retry.Retry("openai returned a body that is not JSON") from None
        if not hasattr(response, "choices"):
            raise retry.Retry("openai returned a body that is not a completion")
        text = response.choices[0].message.content or ""
        try:
            analysis = dict(json.loads(text))
        except (json.JSONDecodeError, TypeError, ValueError):
            raise TerminalError("openai returned an analysis that is not JSON") from None
        # Chat completions: usage.prompt_tokens / completion_tokens.
        return Analysed(analysis, from_reply(getattr(response, "usage", None),
                                             "prompt_tokens", "completion_tokens"))

    return with_budget(attempt, remaining_s)


def with_budget(attempt: Callable[[float], Analysed],
                remaining_s: Callable[[], float]) -> Analysed:
    return retry.with_budget(attempt, remaining_s=remaining_s,
                             attempt_timeout_s=float(os.environ.get("PROVIDER_TIMEOUT_S", "60")))
