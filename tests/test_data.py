"""Data layer: data root, offline errors, real CIFAR-10/MNIST, task variants, user-supplied formats."""
import pickle
import urllib.error

import numpy as np
import pytest
import torch

import univenc.data as D
from conftest import needs


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("UNIVENC_DATA", raising=False)
    assert D.data_root() == D.REPO_ROOT / "data"
    monkeypatch.setenv("UNIVENC_DATA", str(tmp_path))
    assert D.data_root() == tmp_path
    assert D.data_root("/elsewhere") == D.Path("/elsewhere")


def test_missing_dataset_without_download_names_files_and_remedies(tmp_path):
    with pytest.raises(D.DatasetNotFoundError) as err:
        D.load_dataset("cifar10", root=tmp_path, download=False)
    msg = str(err.value)
    assert "cifar-10-batches-py/data_batch_1" in msg and str(tmp_path) in msg
    assert "connect to the internet and rerun" in msg and "copy the files there" in msg


def test_offline_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    with pytest.raises(D.DatasetNotFoundError, match="URLError.*\n.*connect to the internet"):
        D.load_dataset("cifar10", root=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_dataset("svhn", root=tmp_path)


@needs("cifar10")
def test_real_cifar10_matches_torchvision():
    from torchvision.datasets import CIFAR10
    x, y = D.load_dataset("cifar10", train=True)
    assert x.shape == (50000, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    ref = CIFAR10(str(D.data_root()), train=True, download=False)
    assert y.tolist() == ref.targets
    assert torch.equal(x[123].permute(1, 2, 0), torch.from_numpy(ref.data[123]))
    xt, _ = D.load_dataset("cifar10", train=False)
    assert xt.shape == (10000, 3, 32, 32)


@needs("mnist")
def test_real_mnist_is_padded_and_three_channel():
    x, y = D.load_dataset("mnist", train=False)
    assert x.shape == (10000, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0], x[:, 2]) and x[:, :, :2].max() == 0 and x[:, :, :, -2:].max() == 0
    assert set(y.unique().tolist()) == set(range(10))


def make_cifar100(root, n_train=300, n_test=100, seed=0):
    """Tiny files in CIFAR-100's pickle format (the real ones are md5-checked, so the check is patched)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        d = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": list(rng.integers(0, 100, n)),
             "coarse_labels": [0] * n}
        with open(folder / name, "wb") as fh:
            pickle.dump(d, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, fh)


def test_cifar100_variants_on_generated_files(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    make_cifar100(tmp_path)
    x, y = D.load_dataset("cifar100", root=tmp_path)
    assert x.shape == (300, 3, 32, 32)
    half_a, half_b = D.cifar100_halves()
    assert len(half_a) == len(half_b) == 50 and not set(half_a) & set(half_b)
    ta = D.load_task(D.Task("cifar100a"), tmp_path)
    tb = D.load_task(D.Task("cifar100b"), tmp_path)
    assert ta.num_classes == 50 and len(ta.train_labels) + len(tb.train_labels) == 300
    assert ta.train_labels.max() < 50 and tb.test_labels.max() < 50
    assert D.Task("cifar100a").classes == half_a and len(D.Task("cifar100b").train_class_counts) == 50


def test_task_variants_are_pure_and_seeded():
    y = torch.arange(100) % 10
    x = torch.arange(100)[:, None]
    xs, ys = D.select_classes(x, y, range(5, 10))
    assert set(ys.tolist()) == set(range(5)) and torch.equal(xs[:, 0] % 10, ys + 5)
    xl, yl = D.limit_per_class(x, y, 3, seed=1)
    assert torch.bincount(yl).tolist() == [3] * 10
    assert torch.equal(D.limit_per_class(x, y, 3, seed=1)[0], xl)
    ra, rb = D.random_labels(y, 10, 1), D.random_labels(y, 10, 2)
    assert torch.equal(ra, D.random_labels(y, 10, 1)) and not torch.equal(ra, rb)


@needs("cifar10")
def test_real_cifar_tasks():
    t5 = D.load_task(D.Task("cifar5", per_class=100))
    assert t5.num_classes == 5 and len(t5.train_labels) == 500 and t5.test_labels.max() == 4
    b = D.load_task(D.Task("cifar10b"))
    assert len(b.train_labels) == 25000 and b.num_classes == 5
    assert tuple(torch.bincount(b.train_labels).tolist()) == D.Task("cifar10b").train_class_counts
    r = D.load_task(D.Task("cifar10", per_class=50, random_labels="a"))
    true = D.load_task(D.Task("cifar10", per_class=50))
    assert torch.equal(r.train_images, true.train_images) and (r.train_labels == true.train_labels).float().mean() < 0.3


def test_downsampled_imagenet_pickle_format(tmp_path):
    rng = np.random.default_rng(0)
    for i in (1, 2, 10):
        with open(tmp_path / f"train_data_batch_{i}", "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [1, 2, 1000, 5],
                         "mean": np.zeros(3072)}, fh)
    with open(tmp_path / "val_data", "wb") as fh:
        pickle.dump({"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": [1, 1, 2]}, fh)
    x, y = D.load_downsampled_imagenet(tmp_path, train=True)
    assert x.shape == (12, 3, 32, 32) and y.tolist()[:4] == [0, 1, 999, 4]
    xv, yv = D.load_downsampled_imagenet(tmp_path, train=False)
    assert xv.shape == (3, 3, 32, 32) and yv.tolist() == [0, 0, 1]
    with pytest.raises(D.DatasetNotFoundError, match="val_data"):
        D.load_downsampled_imagenet(tmp_path / "nothing", train=False)


def test_image_folder(tmp_path):
    from PIL import Image
    for c in ("n01", "n02"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    ds = D.image_folder(tmp_path, train=True, size=32)
    x, y = ds[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and y == 1 and ds.classes == ["n01", "n02"]
    assert D.image_folder(tmp_path, train=False, size=32)[0][0].shape == (3, 32, 32)
    with pytest.raises(D.DatasetNotFoundError):
        D.image_folder(tmp_path / "missing")
