"""Predictor: parity with the exported model, every input kind, top-k, batches."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtime_samples import broken_files, encode

from cifar10_runtime import ConfigError, ImageError, Prediction, Predictor
from cifar10_runtime.predictor import make_prediction

# --- the exported model (trained on the real subset, exported by cifar-export) -----------


@pytest.fixture(scope="module")
def exported(exported_dir: Path) -> tuple[Predictor, np.ndarray, np.ndarray, list[Path]]:
    # The float32 reference engine: these tests pin its outputs bit for bit (test_engines.py
    # covers the other engines, within their tolerances).
    predictor = Predictor(exported_dir / "model.onnx", engine="onnxruntime", precision="fp32")
    images = np.load(exported_dir / "images.npy")
    expected = np.load(exported_dir / "probabilities.npy")
    pngs = sorted((exported_dir / "png").glob("*.png"))
    assert len(pngs) == len(images) == len(expected) > 0
    return predictor, images, expected, pngs


def test_predict_array_equals_the_exported_parity_outputs(exported) -> None:  # type: ignore[no-untyped-def]
    predictor, images, expected, _ = exported
    assert predictor.input_dtype == np.uint8
    assert len(predictor.metadata["class_names"]) == 10
    np.testing.assert_array_equal(predictor.predict_array(images), expected)


def test_png_files_give_the_exported_outputs_exactly(exported) -> None:  # type: ignore[no-untyped-def]
    predictor, _, expected, pngs = exported
    batch = predictor.predict_batch(pngs, batch_size=len(pngs))
    np.testing.assert_array_equal(np.stack([p.probabilities for p in batch]), expected)
    singles = [predictor.predict(path) for path in pngs[:16]]
    for single, row in zip(singles, expected[:16], strict=True):
        np.testing.assert_array_equal(single.probabilities, row)
        assert single.index == int(row.argmax())
        assert single.label == predictor.class_names[single.index]


# --- the real CIFAR-10 subset through the tiny contract model ----------------------------


def test_real_subset_pngs_decode_losslessly(
    predictor: Predictor, subset_images: np.ndarray, subset_pngs: Path
) -> None:
    files = sorted(subset_pngs.glob("*.png"))
    expected = predictor.predict_array(subset_images)
    for batch_size in (1, 7, 64):
        got = predictor.predict_batch(files, batch_size=batch_size)
        np.testing.assert_array_equal(np.stack([p.probabilities for p in got]), expected)


def test_every_input_kind_gives_the_same_prediction(
    predictor: Predictor, subset_images: np.ndarray, subset_pngs: Path
) -> None:
    array = subset_images[5]
    path = subset_pngs / "005.png"
    data = path.read_bytes()
    expected = make_prediction(predictor.predict_array(array[None])[0], predictor.class_names)
    with open(path, "rb") as handle:
        from_handle = predictor.predict(handle)
    kinds = {
        "array": predictor.predict(array),
        "non-contiguous array": predictor.predict(np.asfortranarray(array)),
        "str": predictor.predict(str(path)),
        "Path": predictor.predict(path),
        "bytes": predictor.predict(data),
        "file": from_handle,
        "PIL": predictor.predict(Image.open(io.BytesIO(data))),
    }
    for kind, prediction in kinds.items():
        assert prediction == expected, kind


def test_prediction_fields_and_top_k(predictor: Predictor, subset_images: np.ndarray) -> None:
    row = predictor.predict_array(subset_images[:1])[0]
    one = predictor.predict(subset_images[0])
    assert isinstance(one, Prediction)
    assert one.index == int(row.argmax()) and one.probability == float(row.max())
    assert one.probabilities.dtype == np.float32 and one.probabilities.shape == (10,)
    assert len(one.top_k) == 1 and one.top_k[0].label == one.label

    three = predictor.predict(subset_images[0], top_k=3)
    assert [s.index for s in three.top_k] == list(np.argsort(-row, kind="stable")[:3])
    probs = [s.probability for s in three.top_k]
    assert probs == sorted(probs, reverse=True)
    every = predictor.predict(subset_images[0], top_k=10)
    assert sorted(s.index for s in every.top_k) == list(range(10))

    as_json = json.loads(json.dumps(three.to_dict()))
    assert set(as_json) == {"label", "index", "probability", "top_k"}
    assert as_json["top_k"][1] == {
        "label": three.top_k[1].label,
        "index": three.top_k[1].index,
        "probability": three.top_k[1].probability,
    }
    assert len(three.to_dict(include_probabilities=True)["probabilities"]) == 10


def test_ties_go_to_the_lower_index() -> None:
    row = np.array([0.1, 0.3, 0.3, 0.3, 0, 0, 0, 0, 0, 0], np.float32)
    names = [str(i) for i in range(10)]
    assert make_prediction(row, names).index == 1
    assert [s.index for s in make_prediction(row, names, 3).top_k] == [1, 2, 3]


@pytest.mark.parametrize("top_k", [0, 11, -1, 2.5, "3", True])
def test_bad_top_k_is_a_config_error(predictor: Predictor, top_k: object) -> None:
    with pytest.raises(ConfigError, match="top_k"):
        predictor.predict(np.zeros((32, 32, 3), np.uint8), top_k=top_k)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((2, 32, 32, 3), np.float32), "float32"),
        (np.zeros((2, 28, 28, 1), np.uint8), r"\(2, 28, 28, 1\)"),
        (np.zeros((32, 32, 3), np.uint8), r"x\[None\]"),
        ([[0]], "list"),
    ],
)
def test_predict_array_checks_dtype_and_shape(
    predictor: Predictor, x: object, message: str
) -> None:
    with pytest.raises(ImageError, match=message):
        predictor.predict_array(x)  # type: ignore[arg-type]


def test_predict_array_edge_sizes(predictor: Predictor, subset_images: np.ndarray) -> None:
    assert predictor.predict_array(subset_images[:0]).shape == (0, 10)
    strided = subset_images[::2]  # not contiguous: copied once, same answers
    np.testing.assert_array_equal(
        predictor.predict_array(strided), predictor.predict_array(strided.copy())
    )


def test_predict_batch_on_error_return_keeps_going(
    predictor: Predictor, subset_pngs: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "truncated.png"
    broken.write_bytes(broken_files()["truncated.png"])
    good = sorted(subset_pngs.glob("*.png"))[:5]
    items = [good[0], broken, good[1], tmp_path / "absent.png", *good[2:]]
    results = predictor.predict_batch(items, batch_size=2, on_error="return")
    assert [type(r).__name__ for r in results] == [
        "Prediction",
        "ImageError",
        "Prediction",
        "ImageError",
        "Prediction",
        "Prediction",
        "Prediction",
    ]
    assert str(broken) in str(results[1]) and "no such file" in str(results[3])
    for path, result in zip(good, [results[0], results[2], *results[4:]], strict=True):
        assert result == predictor.predict(path)

    with pytest.raises(ImageError, match="truncated.png"):
        predictor.predict_batch(items, batch_size=2)
    with pytest.raises(ConfigError, match="batch_size"):
        predictor.predict_batch(good, batch_size=0)
    with pytest.raises(ConfigError, match="on_error"):
        predictor.predict_batch(good, on_error="ignore")  # type: ignore[arg-type]


def test_predict_batch_mixed_kinds_and_arrays(
    predictor: Predictor, subset_images: np.ndarray
) -> None:
    mixed = [subset_images[0], encode(Image.fromarray(subset_images[1])), subset_images[2]]
    got = predictor.predict_batch(mixed, top_k=2)
    expected = predictor.predict_array(subset_images[:3])
    np.testing.assert_array_equal(np.stack([p.probabilities for p in got]), expected)
    assert all(len(p.top_k) == 2 for p in got)
    from_array = predictor.predict_batch(subset_images[:10], batch_size=3)
    np.testing.assert_array_equal(
        np.stack([p.probabilities for p in from_array]), predictor.predict_array(subset_images[:10])
    )
    assert predictor.predict_batch([]) == []


def test_predict_batch_takes_one_hwc_array_as_one_image(
    predictor: Predictor, subset_images: np.ndarray
) -> None:
    # Iterating a 32x32x3 array would give 32 "grey images" (its rows).
    one = subset_images[3]
    (got,) = predictor.predict_batch(one)
    assert got == predictor.predict(one)
    big = np.ascontiguousarray(np.kron(one, np.ones((2, 2, 1), np.uint8)))  # 64x64x3
    assert len(predictor.predict_batch(big)) == 1
    assert len(predictor.predict_batch(big[None].repeat(3, axis=0))) == 3  # [N,H,W,C] resized


@pytest.mark.parametrize("shape", [(32, 32), (5, 32, 32), (3072,), (1, 2, 32, 32, 3), ()])
def test_predict_batch_refuses_arrays_that_are_not_images(
    predictor: Predictor, shape: tuple[int, ...]
) -> None:
    with pytest.raises(ImageError, match=r"predict_batch takes an array of images \[N,H,W,C\]"):
        predictor.predict_batch(np.zeros(shape, np.uint8))
