"""Loaders on the real subset (folder, batch folder itself, .tar.gz), synthetic, and bad data."""

from __future__ import annotations

import io
import pickle
import shutil
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from cifar10_trainer import data as D
from cifar10_trainer.errors import DataError


@pytest.fixture(scope="module")
def real(subset_dir: Path) -> D.Dataset:
    return D.load_cifar10(subset_dir)


def test_subset_folder_loads_as_official_format(real: D.Dataset) -> None:
    assert real.x_train.shape == (5085, 32, 32, 3) and real.x_train.dtype == np.uint8
    assert real.y_train.shape == (5085,) and real.y_train.dtype == np.int64
    assert real.x_test.shape == (500, 32, 32, 3)
    assert set(np.unique(real.y_train)) == set(range(10))
    assert real.class_names == D.CLASS_NAMES and not real.synthetic


def test_images_are_hwc_rgb_not_chw(subset_dir: Path, real: D.Dataset) -> None:
    raw = pickle.loads((subset_dir / D.BATCH_DIR / D.TEST_FILE).read_bytes(), encoding="bytes")
    first = np.asarray(raw[b"data"][0])
    # The official layout is 1024 reds, 1024 greens, 1024 blues, each row-major.
    assert np.array_equal(real.x_test[0, :, :, 0].ravel(), first[:1024])
    assert np.array_equal(real.x_test[0, :, :, 2].ravel(), first[2048:])
    assert real.y_test[0] == raw[b"labels"][0]


def test_batch_folder_itself_is_accepted(subset_dir: Path, real: D.Dataset) -> None:
    same = D.load_cifar10(subset_dir / D.BATCH_DIR)
    assert np.array_equal(same.x_train, real.x_train)


def test_tar_gz_is_read_without_extracting(
    tmp_path: Path, subset_dir: Path, real: D.Dataset
) -> None:
    archive = tmp_path / D.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(subset_dir / D.BATCH_DIR, arcname=D.BATCH_DIR)
        evil = tarfile.TarInfo("../escaped.txt")  # a traversal member must never land anywhere
        payload = b"owned"
        evil.size = len(payload)
        tar.addfile(evil, io.BytesIO(payload))
    for where in (tmp_path, archive):
        got = D.load_cifar10(where)
        assert np.array_equal(got.x_test, real.x_test) and np.array_equal(got.y_train, real.y_train)
    assert not (tmp_path.parent / "escaped.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [D.ARCHIVE]


def test_synthetic_is_deterministic_balanced_and_labelled() -> None:
    a, b = D.load_synthetic(seed=3), D.load_synthetic(seed=3)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert a.x_train.shape == (5000, 32, 32, 3) and a.x_train.dtype == np.uint8
    assert np.bincount(a.y_train).tolist() == [500] * 10
    assert a.synthetic and "synthetic" in a.source
    assert not np.array_equal(a.x_train, D.load_synthetic(seed=4).x_train)


def test_validation_split_is_disjoint_and_seeded(real: D.Dataset) -> None:
    x_tr, y_tr, x_val, y_val = D.split_validation(real.x_train, real.y_train, 0.1, seed=0)
    assert len(x_val) == 508 and len(x_tr) == 5085 - 508
    again = D.split_validation(real.x_train, real.y_train, 0.1, seed=0)
    assert np.array_equal(again[2], x_val)
    with pytest.raises(DataError, match="validation_split=1.5"):
        D.split_validation(real.x_train, real.y_train, 1.5, seed=0)


# --- bad data: every case is one DataError naming the file, never a traceback from pickle


def _copy_subset(subset_dir: Path, tmp_path: Path) -> Path:
    dest = tmp_path / D.BATCH_DIR
    shutil.copytree(subset_dir / D.BATCH_DIR, dest)
    return dest


def _rewrite(path: Path, **changes: object) -> None:
    obj = pickle.loads(path.read_bytes(), encoding="bytes")
    obj.update({k.encode(): v for k, v in changes.items()})
    path.write_bytes(pickle.dumps(obj))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist.*--data-dir.*--dataset synthetic"):
        D.load_cifar10(tmp_path / "nope")


def test_folder_without_cifar(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds neither"):
        D.load_cifar10(tmp_path)


def test_missing_batch_file(tmp_path: Path, subset_dir: Path) -> None:
    folder = _copy_subset(subset_dir, tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing data_batch_3"):
        D.load_cifar10(tmp_path)


def test_truncated_batch(tmp_path: Path, subset_dir: Path) -> None:
    folder = _copy_subset(subset_dir, tmp_path)
    raw = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="data_batch_2 is not a readable CIFAR-10 batch"):
        D.load_cifar10(tmp_path)


def test_not_a_cifar_pickle(tmp_path: Path, subset_dir: Path) -> None:
    folder = _copy_subset(subset_dir, tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps({b"pixels": [1, 2, 3]}))
    with pytest.raises(DataError, match="test_batch is not a CIFAR-10 batch: needs keys"):
        D.load_cifar10(tmp_path)


def test_pickle_that_would_run_code_is_refused(tmp_path: Path, subset_dir: Path) -> None:
    folder = _copy_subset(subset_dir, tmp_path)

    class Exploit:
        def __reduce__(self):  # noqa: ANN204
            return (Path.touch, (tmp_path / "pwned",))

    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}))
    with pytest.raises(DataError, match="not allowed"):
        D.load_cifar10(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_labels_out_of_range(tmp_path: Path, subset_dir: Path) -> None:
    folder = _copy_subset(subset_dir, tmp_path)
    obj = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="bytes")
    _rewrite(folder / "data_batch_1", labels=[*obj[b"labels"][:-1], 10])
    with pytest.raises(DataError, match=r"data_batch_1 has labels outside 0\.\.9"):
        D.load_cifar10(tmp_path)


def test_wrong_image_shape(tmp_path: Path, subset_dir: Path) -> None:
    folder = _copy_subset(subset_dir, tmp_path)
    _rewrite(folder / "test_batch", data=np.zeros((500, 28 * 28), dtype=np.uint8))
    with pytest.raises(DataError, match=r"test_batch has images of shape \(500, 784\)"):
        D.load_cifar10(tmp_path)


def test_label_count_mismatch(tmp_path: Path, subset_dir: Path) -> None:
    folder = _copy_subset(subset_dir, tmp_path)
    _rewrite(folder / "test_batch", labels=[0, 1, 2])
    with pytest.raises(DataError, match="3 labels for 500 images"):
        D.load_cifar10(tmp_path)


def test_corrupt_archive(tmp_path: Path) -> None:
    (tmp_path / D.ARCHIVE).write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="not a readable cifar-10-python.tar.gz"):
        D.load_cifar10(tmp_path)


def test_offline_default_names_both_ways_out(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args: object, **kwargs: object):  # noqa: ANN202
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(D.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=r"cannot download.*--data-dir.*--dataset synthetic"):
        D.load_cifar10(None)
    assert list((tmp_path / "datasets").iterdir()) == []  # no partial file left


def test_download_with_wrong_checksum_is_refused(tmp_path: Path, monkeypatch) -> None:
    class FakeResponse(io.BytesIO):
        def __enter__(self):  # noqa: ANN204
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    monkeypatch.setattr(D.urllib.request, "urlopen", lambda *a, **k: FakeResponse(b"tampered"))
    with pytest.raises(DataError, match=f"expected {D.ARCHIVE_SHA256}"):
        D.download_archive(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cached_archive_with_right_checksum_is_used(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / D.ARCHIVE).write_bytes(b"pretend archive")
    monkeypatch.setattr(D, "ARCHIVE_SHA256", D.sha256_hex(tmp_path / D.ARCHIVE))
    monkeypatch.setattr(D.urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded"))
    assert D.download_archive(tmp_path) == tmp_path / D.ARCHIVE


def test_unknown_dataset_name() -> None:
    with pytest.raises(DataError, match="dataset='imagenet'"):
        D.load_dataset("imagenet")
