"""EfficientNet-Lite0 on ONNX Runtime: the graph written from the torch state dict, cached on disk between starts.

Why write the graph instead of exporting the Keras model: an export needs TensorFlow in the process (seconds to
import, hundreds of MB), tf2onnx's ``from_keras`` does not support Keras 3 (onnx/tensorflow-onnx#2329), and Keras'
own ``export(format="onnx")`` goes through tf2onnx with a monkeypatch for numpy 2. The network is only convolutions
with folded BatchNorm, ReLU6, residual adds and a global average, so it is written here op by op from the same
arrays, and the same description (:func:`._convs`), as the Keras model.
Only ``onnx`` (to write) and ``onnxruntime`` (to run) are needed; a cached model needs only ``onnxruntime``.
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from .efficientnet_lite0 import (HEAD, HEAD_CHANNELS, INPUT_SIZE, STEM, _bn_name, _bn_scale_shift, _block_convs,
                                 _blocks, _Conv)  # fmt: skip

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # in the cache file name: bump it whenever the graph written below changes
_OPSET, _IR_VERSION = 17, 8  # fixed so a newer onnx package writes the same file; ONNX Runtime >= 1.14 runs it
INPUT, OUTPUT = "image", "features"


def cached_session(cache_dir: Path | None, weights_key: str, state: Callable[[], dict[str, np.ndarray]],
                   intra_op_threads: int) -> ort.InferenceSession:  # fmt: skip
    """A session on the model for ``weights_key`` cached in ``cache_dir``; built from ``state()`` (and cached)
    when the file is missing or unusable. ``weights_key`` must name the weights' bytes (their SHA-256)."""
    path = cache_dir / f"efficientnet_lite0-{weights_key}-onnx{FORMAT_VERSION}.onnx" if cache_dir else None
    if path is not None and path.is_file():
        session = _load_cached(path, weights_key, intra_op_threads)
        if session is not None:
            return session
    data = build_model(state(), weights_key).SerializeToString()
    if path is not None:
        _write_atomically(path, data)
    return _session(data, intra_op_threads)


def _load_cached(path: Path, weights_key: str, intra_op_threads: int) -> ort.InferenceSession | None:
    try:
        session = _session(str(path), intra_op_threads)
    except Exception as exc:  # noqa: BLE001  ONNX Runtime's errors derive from Exception; any of them means rebuild
        logger.warning("rebuilding unreadable ONNX model cache %s: %s", path, exc)
        return None
    found = session.get_modelmeta().custom_metadata_map.get("weights")
    if found != weights_key:  # a copied or renamed file: never serve other weights under this id
        logger.warning("rebuilding ONNX model cache %s: made for weights %s", path, found)
        return None
    return session


def _session(model: str | bytes, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # Constant folding, Conv+Clip fusion and the blocked (NCHWc) conv layout; the layout is chosen for this CPU at
    # load time, which is why the file cached is the plain graph and not ONNX Runtime's optimised one.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The graph is a chain, so there is nothing to run in parallel between ops: sequential mode, one inter-op
    # thread. All parallelism is within each conv (intra-op), sized by the caller.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = intra_op_threads
    # No spin-waiting between ops: spinning saved ~0.3 ms of ~7 per image on an idle machine, but while other
    # processes were busy (other workers, SIFT after the embed) embed_one took ~40 ms with it against 13-18 without.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _write_atomically(path: Path, data: bytes) -> None:
    """Temp file in the same directory, then ``os.replace``: readers see no file or a whole one, never a part.
    Not being able to write the cache only costs the next start a rebuild, so it is logged, not raised."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide it from workers running as another user
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        logger.warning("cannot cache the ONNX model at %s (%s); the next start builds it again", path, exc)


# -- the graph ---------------------------------------------------------------------------------------------------


def build_model(state: dict[str, np.ndarray], weights_key: str) -> onnx.ModelProto:
    """(n, 224, 224, 3) float32 pixels scaled like the Keras input -> (n, 1280) pooled head features.

    ``state`` must have passed :func:`._check_state`. The input stays NHWC, as the preprocessing makes it; the
    graph transposes to ONNX's NCHW once. Torch conv weights are already in ONNX's (out, in/group, kh, kw) layout.
    """
    import onnx
    from onnx import TensorProto, helper

    graph = _GraphWriter(state)
    x = graph.node("Transpose", [INPUT], perm=[0, 3, 1, 2])
    x = graph.conv(x, STEM)
    for block in _blocks():
        shortcut = x
        for conv in _block_convs(block):
            x = graph.conv(x, conv)
        if block.has_skip:
            x = graph.node("Add", [x, shortcut])
    x = graph.conv(x, HEAD)
    x = graph.node("GlobalAveragePool", [x])  # (n, 1280, 1, 1)
    graph.node("Flatten", [x], axis=1, output=OUTPUT)
    model = helper.make_model(
        helper.make_graph(
            graph.nodes, "efficientnet_lite0",
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["n", INPUT_SIZE, INPUT_SIZE, 3])],
            [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["n", HEAD_CHANNELS])],
            initializer=graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", _OPSET)], ir_version=_IR_VERSION, producer_name="visualsearch",
    )  # fmt: skip
    helper.set_model_props(model, {"weights": weights_key, "format": str(FORMAT_VERSION)})
    onnx.checker.check_model(model)
    return model


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """(pad before, pad after, output size) of TF 'SAME' padding: the odd pixel goes after (bottom/right), as in
    the Keras model and the original TF training; symmetric padding would shift every feature."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class _GraphWriter:
    """Collects nodes and initializers; each method adds ops and returns the name of their output."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        from onnx import numpy_helper

        self.state, self._from_array = state, numpy_helper.from_array
        self.nodes: list[onnx.NodeProto] = []
        self.initializers = [self._from_array(np.float32(0.0), "zero"), self._from_array(np.float32(6.0), "six")]
        self.size = INPUT_SIZE  # spatial side of the current activation; static, so padding is explicit

    def node(self, op: str, inputs: list[str], output: str | None = None, **attributes: object) -> str:
        from onnx import helper

        output = output or f"{op.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def conv(self, x: str, conv: _Conv) -> str:
        """Conv with its BatchNorm folded in (the products the Keras path computes, in torch layout) + ReLU6."""
        scale, shift = _bn_scale_shift(self.state, _bn_name(conv.name))
        kernel = self.state[f"{conv.name}.weight"] * scale[:, None, None, None]
        self.initializers += [self._from_array(kernel, f"{conv.name}.kernel"),
                              self._from_array(shift, f"{conv.name}.bias")]  # fmt: skip
        before, after, self.size = _same_padding(self.size, conv.kernel, conv.stride)
        x = self.node("Conv", [x, f"{conv.name}.kernel", f"{conv.name}.bias"], output=conv.name,
                      kernel_shape=[conv.kernel] * 2, strides=[conv.stride] * 2, pads=[before, before, after, after],
                      group=conv.c_out if conv.depthwise else 1)  # fmt: skip
        return self.node("Clip", [x, "zero", "six"]) if conv.relu6 else x
