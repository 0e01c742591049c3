"""Datasets as in-memory tensors, and the task variants the paper's figures need.

Every loader returns ``images`` as a uint8 tensor (N, 3, 32, 32) and ``labels`` as an int64 tensor (N,).
Files are read from the data root by each dataset's own library: torchvision's classes (CIFAR, MNIST), the
``medmnist`` package's classes (MedMNIST v2 at 28 x 28, under ``medmnist/``), and ``univenc.audio`` for the
spoken digits of FSDD (as spectrograms). When files are missing, the library's own download puts them there
(``download=True``); offline the error names the files and the two remedies.

Data root: explicit ``root`` argument, else the ``UNIVENC_DATA`` environment variable, else ``<repo>/data``.
"""
from __future__ import annotations

import argparse
import functools
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DatasetNotFoundError", "MissingDatasetsError", "CorruptDatasetError", "checksums", "corrupt_files", "data_root",
    "load_dataset", "ensure_datasets",
    "REQUIRED_DATASETS", "OPTIONAL_DATASETS", "Task", "load_task", "TaskData",
    "random_labels", "limit_per_class", "select_classes", "cifar100_halves",
    "load_downsampled_imagenet", "image_folder", "DATASETS",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

# Files torchvision expects under the data root for each dataset (what an offline user must copy there).
EXPECTED_FILES = {
    "cifar10": ["cifar-10-batches-py/" + f for f in
                ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch", "batches.meta"]],
    "cifar100": ["cifar-100-python/" + f for f in ["train", "test", "meta"]],
    "mnist": ["MNIST/raw/" + f for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]],
    # MedMNIST v2 (28 x 28): chest X-rays, breast ultrasound, retinal fundus photographs
    "pneumoniamnist": ["medmnist/pneumoniamnist.npz"],
    "breastmnist": ["medmnist/breastmnist.npz"],
    "retinamnist": ["medmnist/retinamnist.npz"],
    # Free Spoken Digit Dataset v1.0.10: 6 speakers x 10 digits x 50 recordings
    "fsdd": [f"free-spoken-digit-dataset/recordings/{d}_{s}_{i}.wav" for d in range(10)
             for s in ("george", "jackson", "lucas", "nicolas", "theo", "yweweler") for i in range(50)],
}
DATASETS = tuple(EXPECTED_FILES)
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "mnist": 10, "pneumoniamnist": 2, "breastmnist": 2,
               "retinamnist": 5, "fsdd": 10}
MEDMNIST = ("pneumoniamnist", "breastmnist", "retinamnist")
# Training images per class of each dataset's train split (tests/test_data.py checks them on the real files):
# ``univenc.zoo`` matches gradient steps across datasets from these, before loading anything.
TRAIN_CLASS_COUNTS = {"cifar10": (5000,) * 10, "cifar100": (500,) * 100,
                      "mnist": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
                      "pneumoniamnist": (1214, 3494), "breastmnist": (147, 399),
                      "retinamnist": (486, 128, 206, 194, 66), "fsdd": (270,) * 10}
# What a reproduction cannot do without, and what only adds figures' rows when present.
REQUIRED_DATASETS = ("cifar10", "mnist")
OPTIONAL_DATASETS = ("cifar100", *MEDMNIST, "fsdd")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not in the data root and could not be downloaded."""


class CorruptDatasetError(ValueError):
    """Files of a dataset are in the data root but their checksums are wrong; the message names each file."""


class MissingDatasetsError(DatasetNotFoundError):
    """Required datasets are missing and could not be downloaded; the message lists every one."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$UNIVENC_DATA``, else ``<repo>/data``."""
    if root is not None:
        return Path(root)
    if os.environ.get("UNIVENC_DATA"):
        return Path(os.environ["UNIVENC_DATA"])
    return REPO_ROOT / "data" if (REPO_ROOT / "pyproject.toml").exists() else Path.cwd() / "data"


def is_available(name: str, root=None) -> bool:
    """True when every file of dataset ``name`` is in the data root (no download attempted)."""
    root = data_root(root)
    return all((root / f).exists() for f in EXPECTED_FILES[name])


def checksums(name: str) -> dict[str, tuple[str, str]]:
    """{file under the data root: (hash algorithm, hex digest)} of dataset ``name``, as each dataset's own source
    publishes them: torchvision's md5 of the CIFAR and MNIST files, the ``medmnist`` package's md5 of its npz files,
    and the SHA-256 of every FSDD v1.0.10 recording (shipped with univenc, from FSDD's ``SHA256SUMS``)."""
    if name in ("cifar10", "cifar100"):
        from torchvision import datasets
        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
        return {f"{cls.base_folder}/{f}": ("md5", md5) for f, md5 in files}
    if name == "mnist":
        from torchvision import datasets
        return {f"MNIST/raw/{f}": ("md5", md5) for f, md5 in datasets.MNIST.resources}
    if name in MEDMNIST:
        import medmnist
        return {f"medmnist/{name}.npz": ("md5", medmnist.INFO[name]["MD5"])}
    if name == "fsdd":
        import gzip
        lines = gzip.decompress((Path(__file__).parent / "resources" / FSDD_SHA256SUMS).read_bytes()).decode()
        return {f: ("sha256", digest) for digest, f in (line.split() for line in lines.splitlines())}
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


FSDD_SHA256SUMS = "fsdd_v1.0.10.sha256.gz"


def _digest(path: Path, algorithm: str) -> str:
    import hashlib
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def corrupt_files(name: str, root=None) -> list[str]:
    """The files of dataset ``name`` that are in the data root but whose checksum (:func:`checksums`) is wrong."""
    root = data_root(root)
    return [f for f, (algo, digest) in checksums(name).items()
            if (root / f).exists() and _digest(root / f, algo) != digest]


def _corrupt(root: Path, bad: dict) -> CorruptDatasetError:
    """One error for {dataset: [corrupt files]}: each file, and what to do about it."""
    lines = [f"Corrupt files in the data root {root} (their checksums differ from the published ones):"]
    lines += [f"  - {root / f} ({name})" for name, files in bad.items() for f in files]
    lines.append("Remedies: delete each file listed, so that the dataset's own download replaces it on the next run "
                 "(needs the internet), or copy a good copy of it there.")
    return CorruptDatasetError("\n".join(lines))


def _missing_files(name: str, root: Path) -> list[str]:
    missing = [f for f in EXPECTED_FILES[name] if not (root / f).exists()]
    return missing if len(missing) <= 8 else missing[:3] + [f"... ({len(missing) - 3} more files)"]


def _remedies(root: Path, names) -> str:
    folders = ", ".join(dict.fromkeys(f"{root}/{EXPECTED_FILES[n][0].split('/')[0]}/" for n in names))
    return (f"Remedies: (1) connect to the internet and rerun: each dataset's own download (torchvision, "
            f"medmnist, FSDD's repository archive) puts the files into {root}; or (2) copy the files there yourself "
            f"({folders}, in the layout above), or point UNIVENC_DATA at a folder that has them.")


def _not_found(name: str, root: Path, cause: BaseException | None) -> DatasetNotFoundError:
    why = f" The download failed: {type(cause).__name__}: {cause}." if cause is not None else ""
    return DatasetNotFoundError(
        f"Dataset '{name}' is not in the data root {root} (missing: {', '.join(_missing_files(name, root))})."
        f"{why}\n{_remedies(root, [name])}")


def _pad_to_32(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) or (N, 28, 28, 3) -> (N, 3, 32, 32): zero-padded by 2, grayscale repeated 3 times."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x[:, None].expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return torch.nn.functional.pad(x, (2, 2, 2, 2)).contiguous()


def _read(name: str, train: bool, root: Path):
    """Fetch (the libraries' own downloads verify present files and need no network then) and read a split."""
    if name in MEDMNIST:
        import medmnist

        (root / "medmnist").mkdir(parents=True, exist_ok=True)
        cls = getattr(medmnist, medmnist.INFO[name]["python_class"])
        ds = cls(split="train" if train else "test", root=str(root / "medmnist"), download=True, size=28)
        return _pad_to_32(ds.imgs), torch.as_tensor(ds.labels.reshape(-1), dtype=torch.int64)
    if name == "fsdd":
        from .audio import download_fsdd, load_fsdd

        if not is_available(name, root):
            download_fsdd(root)
        return load_fsdd(root, train)
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100, "mnist": datasets.MNIST}[name]
    # CIFAR's constructor verifies its files' MD5 whatever ``download`` says, and download=True verifies them a
    # second time first; MNIST's download=True also unpacks the .gz files present.
    download = name == "mnist" or not is_available(name, root)
    ds = cls(str(root), train=train, download=download)
    if name == "mnist":
        return _pad_to_32(ds.data.numpy()), torch.as_tensor(ds.targets, dtype=torch.int64)
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return images, torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)


@functools.lru_cache(maxsize=2 * 8)
def _read_cached(name: str, train: bool, root: Path):
    """:func:`_read`, kept for the next call in this process (a job trains many networks on the same data): both
    splits of every dataset, about 0.7 GB in all, so that a job whose networks alternate between datasets reads
    (and MD5-checks) each split once."""
    return _read(name, train, root)


def _load(name: str, train: bool, root: Path, download: bool):
    if not download and not is_available(name, root):
        raise _not_found(name, root, None)
    try:
        images, labels = _read_cached(name, train, root)
        return images.clone(), labels.clone()  # the cached tensors stay as read, whatever the caller does
    except Exception as err:  # offline, corrupt or partial files: one clear error, not the library's
        if is_available(name, root) and (bad := corrupt_files(name, root)):
            raise _corrupt(root, {name: bad}) from err
        raise _not_found(name, root, err) from err


def load_dataset(name: str, train: bool = True, root=None, download: bool = True):
    """Load a dataset into memory.

    Parameters
    ----------
    name : one of ``DATASETS``: "cifar10", "cifar100", "mnist", "pneumoniamnist", "breastmnist", "retinamnist",
        "fsdd".
    train : the training split if True, else the test split (MedMNIST's "val" split is not used).
    root : data root (see :func:`data_root`).
    download : let the dataset's own library download missing files.

    Returns
    -------
    images : uint8 tensor (N, 3, 32, 32). MNIST and MedMNIST (28x28) are zero-padded to 32x32, grayscale
        repeated to 3 channels; FSDD recordings are log spectrograms (:func:`univenc.audio.log_spectrogram`).
    labels : int64 tensor (N,)
    """
    if name not in EXPECTED_FILES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    return _load(name, train, data_root(root), download)


def ensure_datasets(required=REQUIRED_DATASETS, optional=OPTIONAL_DATASETS, root=None,
                    download: bool = True) -> dict[str, str]:
    """Make sure every dataset is in the data root, whole, before any training: verify the checksums of the files
    present (:func:`checksums`), download what is missing with each dataset's own download, and stop with one
    error that lists every problem.

    Returns {name: "present" | "downloaded" | "skipped (optional): ..."}. Raises :class:`CorruptDatasetError`
    naming every file whose checksum is wrong (required or optional dataset) and the remedies, else
    :class:`MissingDatasetsError` naming each missing required dataset and its files, the optional ones skipped,
    and both remedies."""
    root = data_root(root)
    status, failed, corrupt = {}, {}, {}
    for name in (*required, *optional):
        if is_available(name, root):
            status[name] = "present"
            if bad := corrupt_files(name, root):
                corrupt[name] = bad
            continue
        try:
            for train in (True, False):
                _load(name, train, root, download)
            status[name] = "downloaded"
        except DatasetNotFoundError as err:
            failed[name] = err.__cause__
            status[name] = "missing" if name in required else "skipped (optional): not in the data root"
    if corrupt:
        raise _corrupt(root, corrupt)
    missing = [n for n in required if n in failed]
    if missing:
        lines = [f"Required datasets are missing from the data root {root} and could not be downloaded:"]
        for name in failed:
            kind = "required" if name in missing else "optional, skipped"
            cause = failed[name]
            why = f" (download failed: {type(cause).__name__}: {' '.join(str(cause).split())[:240]})" \
                if cause is not None else ""
            lines.append(f"  - {name} [{kind}]: {', '.join(_missing_files(name, root))}{why}")
        lines.append(_remedies(root, list(failed)))
        raise MissingDatasetsError("\n".join(lines))
    return status


# --------------------------------------------------------------------------- task variants (pure, seeded)

def select_classes(images, labels, classes):
    """Keep the samples of ``classes`` and relabel them 0..len(classes)-1 in the given order."""
    classes = torch.as_tensor(list(classes), dtype=torch.int64)
    keep = torch.isin(labels, classes)
    remap = torch.full((max(int(labels.max()), int(classes.max())) + 1,), -1, dtype=torch.int64)
    remap[classes] = torch.arange(len(classes))
    return images[keep], remap[labels[keep]]


def limit_per_class(images, labels, n: int, seed: int = 0):
    """At most ``n`` samples of each class, drawn with ``seed``; the original order is kept."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    keep = torch.sort(torch.cat(keep)).values
    return images[keep], labels[keep]


def random_labels(labels, num_classes: int, seed: int):
    """Uniformly random labels in 0..num_classes-1, one realisation per ``seed`` (fixed for the whole run)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(num_classes, labels.shape, generator=g, dtype=torch.int64)


def cifar100_halves(seed: int = 0):
    """Two disjoint random halves of the 100 CIFAR-100 classes (analogues of ImageNet100a/b)."""
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[:50]), sorted(perm[50:])


# Named tasks: (dataset, classes or None for all). "10a"/"10b" are the two CIFAR-10 halves.
TASKS = {
    "cifar10": ("cifar10", None),
    "cifar5": ("cifar10", range(5)),
    "cifar10a": ("cifar10", range(5)),
    "cifar10b": ("cifar10", range(5, 10)),
    "cifar100": ("cifar100", None),
    "cifar100a": ("cifar100", "a"),
    "cifar100b": ("cifar100", "b"),
    "mnist": ("mnist", None),
    **{name: (name, None) for name in (*MEDMNIST, "fsdd")},
    "imagenet32": ("imagenet32", None),
    "imagenet": ("imagenet", None),   # ImageFolder at 224x224, streamed (see image_folder)
}
RANDOM_LABEL_SEEDS = {"a": 1001, "b": 2002}


@dataclass(frozen=True)
class Task:
    """What a network is trained on.

    name : a key of ``TASKS`` (e.g. "cifar10", "cifar5", "cifar100a", "mnist").
    per_class : keep at most this many training images per class (None: all). The test split is not limited.
    random_labels : None for true labels, else a realisation name ("a", "b") or an int seed.
    subset_seed : seed of the per-class draw.
    """
    name: str
    per_class: int | None = None
    random_labels: str | int | None = None
    subset_seed: int = 0

    @property
    def dataset(self) -> str:
        return TASKS[self.name][0]

    @property
    def num_classes(self) -> int:
        classes = TASKS[self.name][1]
        if classes is None:
            return {"imagenet32": 1000, "imagenet": 1000}.get(self.dataset) or NUM_CLASSES[self.dataset]
        return 50 if classes in ("a", "b") else len(classes)

    @property
    def classes(self) -> list | None:
        """The dataset's classes that the task keeps (None: all of them)."""
        classes = TASKS[self.name][1]
        if classes in ("a", "b"):
            return cifar100_halves()[0 if classes == "a" else 1]
        return None if classes is None else list(classes)

    @property
    def train_class_counts(self) -> tuple:
        """Training images of each of its classes before ``per_class`` (known without loading anything)."""
        if self.dataset not in TRAIN_CLASS_COUNTS:
            raise ValueError(f"the training-set size of dataset {self.dataset!r} is not listed in "
                             f"univenc.data.TRAIN_CLASS_COUNTS; add its per-class counts there")
        counts = TRAIN_CLASS_COUNTS[self.dataset]
        return counts if self.classes is None else tuple(counts[c] for c in self.classes)

    @property
    def input_size(self) -> tuple:
        """(C, H, W) of the task's images as the networks see them."""
        return (3, 224, 224) if self.dataset == "imagenet" else (3, 32, 32)


@dataclass
class TaskData:
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int


def load_task(task: Task, root=None, download: bool = True) -> TaskData:
    """Train and test tensors of a :class:`Task`. CIFAR5 and CIFAR-10a are the same class set by design:
    CIFAR5 is the paper's name, 10a/10b the pair of disjoint halves."""
    if task.name not in TASKS:
        raise ValueError(f"unknown task {task.name!r}; expected one of {sorted(TASKS)}")
    dataset, classes = task.dataset, task.classes
    if dataset == "imagenet":
        raise ValueError("ImageNet at 224x224 does not fit in memory: use univenc.data.image_folder and "
                         "univenc.training.fit (univenc.zoo.train_zoo does this)")
    if dataset == "imagenet32":
        root_ = data_root(root) / "imagenet32"
        xtr, ytr = load_downsampled_imagenet(root_, train=True)
        xte, yte = load_downsampled_imagenet(root_, train=False)
    else:
        xtr, ytr = load_dataset(dataset, True, root, download)
        xte, yte = load_dataset(dataset, False, root, download)
    if classes is not None:
        xtr, ytr = select_classes(xtr, ytr, classes)
        xte, yte = select_classes(xte, yte, classes)
    num_classes = int(ytr.max()) + 1
    if task.per_class is not None:
        xtr, ytr = limit_per_class(xtr, ytr, task.per_class, task.subset_seed)
    if task.random_labels is not None:
        seed = RANDOM_LABEL_SEEDS.get(task.random_labels, task.random_labels)
        ytr = random_labels(ytr, num_classes, int(seed))
    return TaskData(xtr, ytr, xte, yte, num_classes)


def task_available(task: Task, root=None) -> bool:
    """True when the files of the task's dataset are in the data root."""
    if task.dataset == "imagenet32":
        return (data_root(root) / "imagenet32" / "val_data").exists()
    if task.dataset == "imagenet":
        return (data_root(root) / "imagenet" / "train").is_dir() and (data_root(root) / "imagenet" / "val").is_dir()
    return is_available(task.dataset, root)


# --------------------------------------------------------------------------- data users bring themselves

def load_downsampled_imagenet(folder, train: bool = True):
    """Downsampled ImageNet 32x32 in its published pickle-batch format (Chrabaszcz et al. 2017).

    ``folder`` holds ``train_data_batch_1`` ... ``train_data_batch_10`` and ``val_data``: pickled dicts with
    ``data`` (N, 3072) uint8 in CHW order and ``labels`` 1..1000. Returns images (N, 3, 32, 32) uint8 and
    labels (N,) int64 in 0..999.
    """
    folder = Path(folder)
    files = sorted(folder.glob("train_data_batch_*"), key=lambda p: int(p.name.rsplit("_", 1)[1])) \
        if train else [folder / "val_data"]
    if not files or not all(f.exists() for f in files):
        raise DatasetNotFoundError(
            f"Downsampled ImageNet 32x32 not found in {folder}: expected train_data_batch_1..10 and val_data "
            f"(the pickle batches published by the ImageNet site). Copy them there; they cannot be downloaded "
            f"without an ImageNet account.")
    images, labels = [], []
    for f in files:
        with open(f, "rb") as fh:
            d = pickle.load(fh)
        images.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(d["labels"], dtype=np.int64) - 1)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def image_folder(folder, train: bool = True, size: int = 224):
    """ImageNet (or any class-per-folder image tree) as a torchvision ``ImageFolder`` with the paper's
    transforms: random resized crop + flip for training, resize + centre crop for evaluation. Too large to
    hold in memory, so it streams through a ``DataLoader`` (``univenc.training`` accepts any iterable)."""
    from torchvision import datasets, transforms

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"No image folder at {folder}: expected one sub-folder of images per class.")
    if train:
        tf = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(),
                                 transforms.PILToTensor()])
    else:
        tf = transforms.Compose([transforms.Resize(int(size * 8 / 7)), transforms.CenterCrop(size),
                                 transforms.PILToTensor()])
    return datasets.ImageFolder(str(folder), transform=tf)


def main(argv=None):
    p = argparse.ArgumentParser(description="Fetch (or verify) the datasets into the data root.")
    p.add_argument("--root", default=None)
    p.add_argument("--download", action="store_true", help="download missing files with torchvision")
    args = p.parse_args(argv)
    try:
        status = ensure_datasets(root=args.root, download=args.download)
    except (MissingDatasetsError, CorruptDatasetError) as err:
        raise SystemExit(f"[univenc] {err}") from None
    for name, state in status.items():
        print(f"{name}: {state} ({data_root(args.root)})")


if __name__ == "__main__":
    main()
