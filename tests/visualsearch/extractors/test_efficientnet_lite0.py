"""EfficientNet-Lite0 extractor: interface contract, ImageNet sanity, ONNX Runtime vs TensorFlow, the ONNX model
cache, and the torch-free weights loader.

No database and no network: photos come from scikit-image's bundled samples, weights from the installed wheel.
"""
from __future__ import annotations

import collections
import os
import pickle
import shutil
import subprocess
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as samples

from visualsearch.extractors.base import ExtractorConfigurationError, FeatureExtractor
from visualsearch.extractors import efficientnet_lite0_onnx
from visualsearch.extractors.efficientnet_lite0 import (EfficientNetLite0Extractor, _check_state, _packaged_weights,
                                                      _random_state)  # fmt: skip
from visualsearch.extractors.torch_legacy import load_legacy_state_dict

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup
ROCKET_CLASSES = {657, 744, 812}  # missile, projectile, space shuttle


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(samples, name)())


@pytest.fixture(scope="module")
def extractor() -> EfficientNetLite0Extractor:
    """One real ImageNet model for the module, on the default runtime (ONNX Runtime)."""
    return EfficientNetLite0Extractor()


@pytest.fixture(scope="module")
def tf_extractor() -> EfficientNetLite0Extractor:
    """The same weights on TensorFlow: building it takes seconds."""
    return EfficientNetLite0Extractor(runtime="tensorflow")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)  # rows are unit length


# -- interface contract -------------------------------------------------------------------------------------------


def test_identity() -> None:
    extractor = EfficientNetLite0Extractor()  # no model is built until the first embed
    assert isinstance(extractor, FeatureExtractor)
    assert extractor.id == "efficientnet_lite0-imagenet-v1"
    assert extractor.dim == 1280


@pytest.mark.slow
def test_shape_dtype_and_unit_norm(extractor: EfficientNetLite0Extractor) -> None:
    # Mixed modes on purpose: grayscale (camera) and RGBA (logo) must be converted, not rejected.
    images = [photo("chelsea"), photo("camera"), photo("logo"), photo("coffee").convert("P")]
    vectors = extractor.embed(images)
    assert vectors.shape == (4, 1280)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert extractor.embed_one(images[0]).shape == (1280,)


def test_empty_input_gives_empty_matrix() -> None:
    vectors = EfficientNetLite0Extractor().embed([])
    assert vectors.shape == (0, 1280)
    assert vectors.dtype == np.float32


@pytest.mark.slow
def test_deterministic(extractor: EfficientNetLite0Extractor) -> None:
    images = [photo("chelsea"), photo("rocket"), photo("astronaut")]
    first = extractor.embed(images)
    assert np.array_equal(first, extractor.embed(images))  # same bits, not merely close
    single = extractor.embed(images[:1])
    assert np.array_equal(single, extractor.embed(images[:1]))
    # Across batch sizes only closeness holds: oneDNN picks different kernels per batch size.
    np.testing.assert_allclose(single, first[:1], atol=1e-6)


@pytest.mark.slow
def test_chunking_does_not_change_vectors(extractor: EfficientNetLite0Extractor, monkeypatch: Any) -> None:
    images = [photo(n) for n in ("chelsea", "coffee", "rocket", "astronaut", "camera")]
    whole = extractor.embed(images)
    monkeypatch.setattr(extractor, "batch_size", 2)  # 3 chunks: 2 + 2 + 1
    # Only closeness: the last chunk has another batch size (see test_deterministic).
    np.testing.assert_allclose(extractor.embed(images), whole, atol=1e-5)


@pytest.mark.slow
def test_different_photos_differ_and_a_resized_photo_matches(extractor: EfficientNetLite0Extractor) -> None:
    cat = photo("chelsea")
    smaller = cat.resize((cat.width * 9 // 10, cat.height * 9 // 10), Image.Resampling.LANCZOS)
    cat_v, smaller_v, coffee_v, rocket_v = extractor.embed([cat, smaller, photo("coffee"), photo("rocket")])
    assert cosine(cat_v, smaller_v) > 0.9
    assert cosine(cat_v, coffee_v) < 0.5
    assert cosine(cat_v, rocket_v) < 0.5
    assert cosine(coffee_v, rocket_v) < 0.5


# -- it is the real ImageNet model -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "classes"),
    [("chelsea", CAT_CLASSES), ("coffee", COFFEE_CLASSES), ("rocket", ROCKET_CLASSES)],
)
def test_imagenet_top5(extractor: EfficientNetLite0Extractor, name: str, classes: set[int]) -> None:
    probabilities = extractor.predict_imagenet([photo(name)])
    assert probabilities.shape == (1, 1000)
    np.testing.assert_allclose(probabilities.sum(), 1.0, atol=1e-4)
    top5 = set(np.argsort(-probabilities[0])[:5].tolist())
    assert top5 & classes, f"{name}: top-5 {sorted(top5)} has none of {sorted(classes)}"


# -- ONNX Runtime and TensorFlow: one vector space ----------------------------------------------------------------

REAL_PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "camera", "logo")  # RGB, grayscale and RGBA


@pytest.mark.slow
def test_onnx_runtime_gives_the_tensorflow_vectors(extractor: EfficientNetLite0Extractor,
                                                   tf_extractor: EfficientNetLite0Extractor) -> None:  # fmt: skip
    """Both runtimes share one extractor id, so stored vectors must stay valid across a switch."""
    assert extractor.runtime == "onnxruntime" and extractor.id == tf_extractor.id
    images = [photo(n) for n in REAL_PHOTOS]
    batch_cosines = np.sum(extractor.embed(images) * tf_extractor.embed(images), axis=1)
    assert batch_cosines.min() >= 0.9999, batch_cosines
    assert cosine(extractor.embed_one(images[0]), tf_extractor.embed_one(images[0])) >= 0.9999


def test_onnx_runtime_does_not_import_tensorflow() -> None:
    """A serving process on ONNX Runtime never pays TensorFlow's import time and memory."""
    code = ("import sys; from PIL import Image; "
            "from visualsearch.extractors.efficientnet_lite0 import EfficientNetLite0Extractor as E; "
            "E(weights='random').embed_one(Image.new('RGB', (64, 48))); "
            "assert not {'tensorflow', 'keras'} & set(sys.modules), 'TensorFlow was imported'")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])


# -- the ONNX model cache ------------------------------------------------------------------------------------------


def cached_file(cache_dir: Path) -> Path:
    """The one cache file, asserting no temporary file was left behind."""
    files = list(cache_dir.iterdir())
    assert len(files) == 1 and files[0].suffix == ".onnx", files
    return files[0]


def test_second_start_reuses_the_cached_model(tmp_path: Path, monkeypatch: Any) -> None:
    first = EfficientNetLite0Extractor(weights="random", cache_dir=tmp_path)
    vectors = first.embed([photo("coffee")])
    cached = cached_file(tmp_path)
    assert cached.name == f"efficientnet_lite0-random-seed0-onnx{efficientnet_lite0_onnx.FORMAT_VERSION}.onnx"
    written = cached.stat().st_mtime_ns

    def no_build(*args: Any) -> None:
        raise AssertionError("a cached model must be loaded, not built again")

    monkeypatch.setattr(efficientnet_lite0_onnx, "build_model", no_build)
    monkeypatch.setattr(EfficientNetLite0Extractor, "_state", no_build)  # not even the weights are read
    second = EfficientNetLite0Extractor(weights="random", cache_dir=tmp_path)
    assert np.array_equal(second.embed([photo("coffee")]), vectors)
    assert cached_file(tmp_path).stat().st_mtime_ns == written


def _garbage(path: Path) -> None:
    path.write_bytes(b"not an ONNX model")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _other_weights(path: Path) -> None:
    """A valid model made for other weights, under this file name (copied by hand, say)."""
    model = efficientnet_lite0_onnx.build_model(EfficientNetLite0Extractor(weights="random")._state(), "other")
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("damage", [_garbage, _truncated, _other_weights])
def test_unusable_cache_file_is_rebuilt(tmp_path: Path, caplog: Any, damage: Callable[[Path], None]) -> None:
    images = [photo("coffee"), photo("camera")]
    reference = EfficientNetLite0Extractor(weights="random", cache_dir=tmp_path).embed(images)
    damage(cached_file(tmp_path))
    rebuilt = EfficientNetLite0Extractor(weights="random", cache_dir=tmp_path)
    assert np.array_equal(rebuilt.embed(images), reference)
    assert "rebuilding" in caplog.text
    caplog.clear()
    assert np.array_equal(EfficientNetLite0Extractor(weights="random", cache_dir=tmp_path).embed(images), reference)
    assert "rebuilding" not in caplog.text  # the rebuilt file is good again


def test_unwritable_cache_dir_still_embeds(tmp_path: Path, caplog: Any) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    vectors = EfficientNetLite0Extractor(weights="random", cache_dir=not_a_dir).embed([photo("coffee")])
    assert vectors.shape == (1, 1280)
    assert "cannot cache the ONNX model" in caplog.text


# -- weights options ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_random_weights_are_seeded() -> None:
    images = [photo("chelsea"), photo("coffee")]
    a, b = EfficientNetLite0Extractor(weights="random"), EfficientNetLite0Extractor(weights="random")
    assert a.id == "efficientnet_lite0-random-v1"
    vectors = a.embed(images)
    assert vectors.shape == (2, 1280)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, b.embed(images))  # one fixed vector space, not a fresh draw per instance


@pytest.mark.slow
def test_concurrent_first_calls_build_one_model(monkeypatch: Any) -> None:
    extractor = EfficientNetLite0Extractor(weights="random")
    builds = []
    real_make = extractor._make_forward
    monkeypatch.setattr(extractor, "_make_forward", lambda: builds.append(1) or real_make())
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(extractor.embed([photo("coffee")]))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert len(results) == 4 and all(np.array_equal(r, results[0]) for r in results)


def test_id_follows_weight_bytes(tmp_path: Path) -> None:
    copy = tmp_path / "copy.pth"
    shutil.copyfile(_packaged_weights(), copy)
    assert EfficientNetLite0Extractor(weights=str(copy)).id == "efficientnet_lite0-imagenet-v1"  # same bytes
    with copy.open("ab") as f:
        f.write(b"\0")
    custom_id = EfficientNetLite0Extractor(weights=str(copy)).id
    assert custom_id.startswith("efficientnet_lite0-") and custom_id != "efficientnet_lite0-imagenet-v1"


def test_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ExtractorConfigurationError):
        EfficientNetLite0Extractor(weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ExtractorConfigurationError):
        EfficientNetLite0Extractor(batch_size=0)
    with pytest.raises(ExtractorConfigurationError, match="runtime"):
        EfficientNetLite0Extractor(runtime="torch")
    with pytest.raises(ExtractorConfigurationError, match="intra_op_threads"):
        EfficientNetLite0Extractor(intra_op_threads=-1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # A B0 checkpoint: squeeze-excite tensors Lite0 has no place for.
        (lambda state: state.update({"_blocks.1._se_reduce.weight": np.zeros((4, 96, 1, 1))}), "architecture lacks"),
        (lambda state: state.pop("_blocks.5._bn1.running_var"), "lacks _blocks.5._bn1.running_var"),
        (lambda state: state.update({"_conv_head.weight": np.zeros((1280, 320, 3, 3))}), "shape"),
    ],
)
def test_weights_must_fit_the_architecture_for_every_runtime(change: Callable[[dict], Any], message: str) -> None:
    """Checked on the arrays before either runtime sees them: a B0 checkpoint (with squeeze-excite) or a truncated
    file must fail loudly, not become a silently different vector space."""
    state = _random_state()
    _check_state(state)
    change(state)
    with pytest.raises(ExtractorConfigurationError, match=message):
        _check_state(state)


def test_malicious_weights_file_is_a_configuration_error(tmp_path: Path) -> None:
    path, marker = malicious_file(tmp_path)
    with pytest.raises(ExtractorConfigurationError):
        EfficientNetLite0Extractor(weights=str(path)).embed([photo("chelsea")])
    assert not marker.exists()


# -- the restricted legacy loader ---------------------------------------------------------------------------------

MAGIC, PROTOCOL = 0x1950A86A20F9469CFC6C, 1001
SYS_INFO = {"protocol_version": PROTOCOL, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


class _Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def malicious_file(tmp_path: Path) -> tuple[Path, Path]:
    """A legacy-format file whose state-dict pickle calls os.system."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with path.open("wb") as f:
        for obj in (MAGIC, PROTOCOL, SYS_INFO, {"weight": _Evil(marker)}, []):
            pickle.dump(obj, f, protocol=2)
    return path, marker


def test_loader_refuses_arbitrary_globals(tmp_path: Path) -> None:
    path, marker = malicious_file(tmp_path)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        load_legacy_state_dict(path)
    assert not marker.exists()


class _Storage:
    """Pickled by persistent id, like a torch storage: its bytes follow the pickles."""

    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


class _Tensor:
    """Pickles as torch does: ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``."""

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self) -> tuple[Any, ...]:
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


class _TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            return ("storage", sys.modules["torch"].FloatStorage, obj.key, "cpu", obj.data.size, None)
        return None


@pytest.fixture
def fake_torch(monkeypatch: Any) -> None:
    """Just enough of a ``torch`` module for pickle to write references to torch globals, without torch."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})  # type: ignore[attr-defined]

    def _rebuild_tensor_v2(*args: Any) -> None:
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)


def write_legacy(path: Path, state: dict[str, _Tensor], storages: list[_Storage], count_delta: int = 0) -> None:
    """Write ``state`` in torch's legacy layout (see torch_legacy's docstring)."""
    with path.open("wb") as f:
        for obj in (MAGIC, PROTOCOL, SYS_INFO):
            pickle.dump(obj, f, protocol=2)
        _TorchLikePickler(f, protocol=2).dump(collections.OrderedDict(state))
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write((s.data.size + count_delta).to_bytes(8, "little", signed=True))
            f.write(s.data.astype("<f4").tobytes())


def test_loader_round_trip_with_strides_and_shared_storage(tmp_path: Path, fake_torch: None) -> None:
    data = np.arange(30, dtype=np.float32)
    shared, other = _Storage("0", data), _Storage("1", np.array([7.0], dtype=np.float32))
    state = {
        "conv.weight": _Tensor(shared, 0, (2, 3), (1, 2)),  # transposed (column-major) view, like the real file
        "conv.bias": _Tensor(shared, 10, (4,), (1,)),  # second tensor in the same storage, at an offset
        "scalar": _Tensor(other, 0, (), ()),
    }
    path = tmp_path / "ok.pth"
    write_legacy(path, state, [shared, other])
    loaded = load_legacy_state_dict(path)
    assert list(loaded) == ["conv.weight", "conv.bias", "scalar"]
    np.testing.assert_array_equal(loaded["conv.weight"], [[0, 2, 4], [1, 3, 5]])
    np.testing.assert_array_equal(loaded["conv.bias"], [10, 11, 12, 13])
    assert loaded["scalar"].shape == () and loaded["scalar"] == 7.0
    assert all(a.flags.c_contiguous and a.flags.writeable for a in loaded.values())


def test_loader_rejects_out_of_bounds_and_truncated_storages(tmp_path: Path, fake_torch: None) -> None:
    storage = _Storage("0", np.zeros(4, dtype=np.float32))
    out_of_bounds = tmp_path / "oob.pth"
    write_legacy(out_of_bounds, {"w": _Tensor(storage, 2, (4,), (1,))}, [storage])
    with pytest.raises(pickle.UnpicklingError, match="exceeds"):
        load_legacy_state_dict(out_of_bounds)
    wrong_count = tmp_path / "count.pth"
    write_legacy(wrong_count, {"w": _Tensor(storage, 0, (4,), (1,))}, [storage], count_delta=1)
    with pytest.raises(pickle.UnpicklingError):
        load_legacy_state_dict(wrong_count)


def test_loader_refuses_tensors_larger_than_the_file(tmp_path: Path, fake_torch: None) -> None:
    """A 0-stride view repeats one float 10**12 times: in bounds of its storage, but 4 TB once copied."""
    storage = _Storage("0", np.zeros(1, dtype=np.float32))
    path = tmp_path / "broadcast.pth"
    write_legacy(path, {"w": _Tensor(storage, 0, (10**6, 10**6), (0, 0))}, [storage])
    with pytest.raises(pickle.UnpicklingError, match="more bytes than the file"):
        load_legacy_state_dict(path)


def test_loader_refuses_many_tensors_adding_up_past_the_file(tmp_path: Path, fake_torch: None) -> None:
    """Each view fits in the file, together they would not: the budget is for the whole file."""
    storage = _Storage("0", np.zeros(1, dtype=np.float32))
    path = tmp_path / "many.pth"
    write_legacy(path, {"w": _Tensor(storage, 0, (1,), (1,))}, [storage])
    side = path.stat().st_size // 4  # one view of about the file's size; a few hundred of them add up
    write_legacy(path, {f"w{n}": _Tensor(storage, 0, (side,), (0,)) for n in range(200)}, [storage])
    assert side * 4 <= path.stat().st_size < 200 * side * 4
    with pytest.raises(pickle.UnpicklingError, match="more bytes than the file"):
        load_legacy_state_dict(path)


def test_loader_reads_the_packaged_weights() -> None:
    state = load_legacy_state_dict(_packaged_weights())
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert len([k for k in state if k.endswith("_depthwise_conv.weight")]) == 16
    assert not any("_se_" in k for k in state)  # Lite: no squeeze-excite


def test_loader_rejects_a_plain_pickle(tmp_path: Path) -> None:
    """A bare pickle is not a legacy torch file: refused on the magic number, its payload never used."""
    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="magic"):
        load_legacy_state_dict(path)



def _nested_view_file(path: Path) -> Path:
    """A tensor passed off as the storage of another tensor, with a 1,000,000-element view over one float:
    before the loader checked storage types this read megabytes past the buffer (a segfault)."""
    import io
    import struct

    from visualsearch.extractors import torch_legacy as tl

    out = bytearray(b"\x80\x02}X\x01\x00\x00\x00w")
    rebuild, floats = b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch\nFloatStorage\n"
    storage = b"(X\x07\x00\x00\x00storage" + floats + b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ\x01\x00\x00\x00Nt" + b"Q"
    inner = rebuild + b"(" + storage + b"J\x00\x00\x00\x00(J\x40\x42\x0f\x00t(J\x00\x00\x00\x00tt" + b"R"
    out += rebuild + b"(" + inner + b"J\x00\x00\x00\x00(J\x40\x42\x0f\x00t(J\x01\x00\x00\x00ttR" + b"s."
    buffer = io.BytesIO()
    for header in (tl._MAGIC_NUMBER, tl._PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(header, buffer, 2)
    buffer.write(bytes(out))
    pickle.dump(["0"], buffer, 2)
    buffer.write(struct.pack("<q", 1) + struct.pack("<f", 1.0))
    path.write_bytes(buffer.getvalue())
    return path


def test_loader_refuses_a_tensor_posing_as_a_storage(tmp_path: Path) -> None:
    with pytest.raises(pickle.UnpicklingError, match="not a storage record"):
        load_legacy_state_dict(_nested_view_file(tmp_path / "nested.pth"))


def test_pickle_cannot_rewrite_the_storage_types() -> None:
    import io

    from visualsearch.extractors import torch_legacy as tl

    rewrite_dtype = b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x02\x00\x00\x00u1sb."
    with pytest.raises(pickle.UnpicklingError, match="refusing to set state"):
        tl._restricted_load(io.BytesIO(rewrite_dtype))
    assert tl._ALLOWED_GLOBALS[("torch", "FloatStorage")].dtype == np.dtype("<f4")
