"""Fashion-MNIST reading, calibration subsets, ImageNet folders, and their error paths."""
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from qmlp_nncf.data import (DataError, FashionMNIST, calibration_subset, foolbox_imagenet_samples,
                            load_fashion_mnist, locate_fashion_mnist)
from qmlp_nncf.sources import DataSource
from tests.conftest import write_idx


def test_real_splits_have_fashion_mnist_shape(fmnist_test, fmnist_train):
    assert len(fmnist_train) == 60000 and len(fmnist_test) == 10000
    x, y = fmnist_test[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= y < 10
    assert torch.bincount(fmnist_test.labels).tolist() == [1000] * 10
    assert fmnist_train.fingerprint != fmnist_test.fingerprint


def test_eval_transform_is_deterministic_train_transform_augments(fmnist_train):
    assert torch.equal(fmnist_train[3][0], fmnist_train[3][0])
    aug = FashionMNIST.__new__(FashionMNIST)
    aug.__dict__.update(fmnist_train.__dict__)
    from qmlp_nncf.data import fashion_mnist_transform

    aug.transform = fashion_mnist_transform(train=True)
    torch.manual_seed(0)
    views = {aug[3][0].sum().item() for _ in range(8)}
    assert len(views) > 1


def test_calibration_subset_is_deterministic_and_train_only(fmnist_train, fmnist_test):
    a, b = calibration_subset(fmnist_train, 300), calibration_subset(fmnist_train, 300)
    assert a.indices == b.indices and len(set(a.indices)) == 300
    assert calibration_subset(fmnist_train, 300, seed=1).indices != a.indices
    with pytest.raises(ValueError, match="train split"):
        calibration_subset(fmnist_test, 10)
    with pytest.raises(ValueError, match="calibration size"):
        calibration_subset(fmnist_train, 0)


def _fake_dir(tmp_path, n_train=60000, n_test=10000, **broken):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, (n,), dtype=np.uint8))
    return tmp_path


def test_reads_a_user_folder_and_env_var(tmp_path, monkeypatch):
    folder = _fake_dir(tmp_path)
    assert load_fashion_mnist("test", folder).images.shape == (10000, 28, 28)
    monkeypatch.setenv("QMLP_DATA_DIR", str(folder))
    assert locate_fashion_mnist() == folder


def test_missing_data_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        locate_fashion_mnist(tmp_path)


def test_corrupt_and_truncated_files_are_reported(tmp_path):
    folder = _fake_dir(tmp_path)
    img = folder / "t10k-images-idx3-ubyte.gz"
    img.write_bytes(b"not a gzip file")
    with pytest.raises(DataError, match="corrupt"):
        load_fashion_mnist("test", folder)
    img.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8))
    with pytest.raises(DataError, match="bad magic"):
        load_fashion_mnist("test", folder)
    img.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + (10000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2))
    with pytest.raises(DataError, match="truncated"):
        load_fashion_mnist("test", folder)


def test_wrong_sizes_and_unknown_split(tmp_path):
    folder = _fake_dir(tmp_path, n_test=500)
    with pytest.raises(DataError, match="has 500 images"):
        load_fashion_mnist("test", folder)
    with pytest.raises(ValueError, match="unknown Fashion-MNIST split"):
        load_fashion_mnist("val", folder)


@pytest.fixture(scope="module")
def imagenet_samples(tmp_path_factory):
    return foolbox_imagenet_samples(tmp_path_factory.mktemp("imagenet") / "samples")


def test_imagenet_folder_keeps_true_labels(imagenet_samples):
    import timm

    model = timm.create_model("mixer_b16_224")
    ds = DataSource(str(imagenet_samples)).dataset("val", model)  # a single split folder serves as val
    assert len(ds) == 20
    x, y = ds[0]
    assert x.shape == (3, 224, 224)
    names = sorted(p.name for p in imagenet_samples.rglob("*.jpg"))
    assert sorted(int(n.rsplit("_", 1)[1][:-4]) for n in names) == sorted(label for _, label in ds.samples)


def test_wnid_folders_map_to_the_imagenet_order(tmp_path):
    """A partial set of wnid folders keeps the standard 1000-class indices, not 0..K-1."""
    import timm

    root = foolbox_imagenet_samples(tmp_path / "wnid", split=True, wnids=True)
    model = timm.create_model("mixer_s32_224")
    for split in ("train", "val"):
        ds = DataSource(str(root)).dataset(split, model)
        assert ds.label_order == "ImageNet-1k wnid order" and len(ds) == 10
        for path, label in ds.samples:
            assert label == int(Path(path).stem.rsplit("_", 1)[1])  # imagenet_<i>_<label>.jpg


def test_imagenet_folder_errors(tmp_path):
    import timm

    model = timm.create_model("mixer_s16_224")
    with pytest.raises(DataError, match="does not exist"):
        DataSource(str(tmp_path / "nope")).dataset("val", model)
    with pytest.raises(DataError, match="no class sub-folders"):
        DataSource(str(tmp_path)).dataset("val", model)
    (tmp_path / "n01440764").mkdir()
    (tmp_path / "n01440764" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="hold no images"):
        DataSource(str(tmp_path)).dataset("val", model)
