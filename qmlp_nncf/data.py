"""Datasets: Fashion-MNIST (IDX files) for the small zoo, ImageNet-style folders for 224-px models.

Fashion-MNIST is read straight from its IDX files because the Debian package
(``dataset-fashion-mnist``) ships them flat as ``*.gz``, a layout torchvision's
``FashionMNIST`` class does not accept; torchvision's downloader is still used when
no local copy exists and the machine is online.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "QMLP_DATA_DIR"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qmlp_nncf" / "fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLIT_SIZES = {"train": 60000, "test": 10000}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = 0.2860, 0.3530
HOW_TO_GET = (
    "Get Fashion-MNIST with `apt-get install dataset-fashion-mnist` (Debian), or put the four "
    "*-ubyte(.gz) files in a folder and pass it with --data-dir / the QMLP_DATA_DIR environment "
    "variable, or run once on a machine with internet so torchvision can download it."
)


class DataError(RuntimeError):
    """Data is missing, corrupt or laid out wrongly; the message says how to fix it."""


def _find_file(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Parse one IDX file (big-endian header: magic, dims, then uint8 data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}. The file is corrupt; replace it. {HOW_TO_GET}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != expected_ndim:
        raise DataError(f"{path} is not a uint8 IDX file with {expected_ndim} dimension(s) (bad magic "
                        f"number). Replace it with the original Fashion-MNIST file.")
    header_end = 4 + 4 * expected_ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(expected_ndim))
    if len(raw) != header_end + int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, file holds "
                        f"{len(raw) - header_end} bytes of data. Replace it with the original file.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(shape)


def _candidate_dirs(data_dir: Optional[str | Path]) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir)]
    dirs = [Path(os.environ[ENV_VAR])] if os.environ.get(ENV_VAR) else []
    return dirs + [DEBIAN_DIR, CACHE_DIR / "FashionMNIST" / "raw"]


def _download() -> Path:
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(CACHE_DIR), train=True, download=True)
        FashionMNIST(str(CACHE_DIR), train=False, download=True)
    except Exception as e:  # no network, mirror down, ...: report the one clear error below
        raise DataError(f"Fashion-MNIST not found locally and the download failed ({e}). {HOW_TO_GET}") from e
    return CACHE_DIR / "FashionMNIST" / "raw"


def locate_fashion_mnist(data_dir: Optional[str | Path] = None, download: bool = True) -> Path:
    """The folder holding the four Fashion-MNIST IDX files.

    Looks in ``data_dir`` if given (and only there), else in ``$QMLP_DATA_DIR``, the Debian
    package folder and the download cache; downloads through torchvision as a last resort.
    """
    searched = _candidate_dirs(data_dir)
    for folder in searched:
        if all(_find_file(folder, s) for pair in FILES.values() for s in pair):
            return folder
    if data_dir is not None:
        raise DataError(f"{data_dir} does not hold the Fashion-MNIST files "
                        f"({', '.join(s for p in FILES.values() for s in p)}, optionally .gz). {HOW_TO_GET}")
    if download:
        return _download()
    raise DataError(f"Fashion-MNIST not found in {', '.join(map(str, searched))}. {HOW_TO_GET}")


@dataclass(frozen=True)
class FashionMNISTArrays:
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) uint8
    fingerprint: str  # sha256 of images + labels, first 16 hex digits


def load_fashion_mnist(split: str, data_dir: Optional[str | Path] = None,
                       download: bool = True) -> FashionMNISTArrays:
    if split not in FILES:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; choose one of {sorted(FILES)}")
    folder = locate_fashion_mnist(data_dir, download)
    img_stem, lbl_stem = FILES[split]
    images = _read_idx(_find_file(folder, img_stem), 3)
    labels = _read_idx(_find_file(folder, lbl_stem), 1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not "
                        f"match (expected N x 28 x 28 images and N labels).")
    if len(images) != SPLIT_SIZES[split]:
        raise DataError(f"{folder}: the {split} split has {len(images)} images, Fashion-MNIST has "
                        f"{SPLIT_SIZES[split]}. Replace the files with the original ones.")
    if labels.max() >= len(CLASSES):
        raise DataError(f"{folder}: {split} labels go up to {labels.max()}, Fashion-MNIST has 10 classes.")
    digest = hashlib.sha256(images.tobytes()).hexdigest() + hashlib.sha256(labels.tobytes()).hexdigest()
    return FashionMNISTArrays(images, labels, hashlib.sha256(digest.encode()).hexdigest()[:16])


def fashion_mnist_transform(train: bool, size: tuple = (1, 28, 28), mean=None, std=None) -> Callable:
    """uint8 (1, 28, 28) tensor -> normalised float of ``size`` (C, H, W: resized, gray replicated to C);
    light augmentation for training."""
    from torchvision.transforms import v2

    c, h, w = size
    steps = [v2.RandomCrop(28, padding=2), v2.RandomHorizontalFlip()] if train else []
    if (h, w) != (28, 28):
        steps.append(v2.Resize((h, w), antialias=True))
    if c != 1:
        steps.append(v2.Grayscale(num_output_channels=c))
    mean = tuple(mean) if mean is not None else (MEAN,)
    std = tuple(std) if std is not None else (STD,)
    return v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True),
                               v2.Normalize(mean * c if len(mean) == 1 else mean, std * c if len(std) == 1 else std)])


class FashionMNIST(Dataset):
    """Fashion-MNIST split held in memory; items are (1x28x28 float tensor, int label), or of ``size``."""

    num_labels = len(CLASSES)

    def __init__(self, split: str = "test", data_dir: Optional[str | Path] = None, train_transform: bool = False,
                 download: bool = True, size: tuple = (1, 28, 28), mean=None, std=None):
        arrays = load_fashion_mnist(split, data_dir, download)
        self.images = torch.from_numpy(arrays.images.copy()).unsqueeze(1)
        self.labels = torch.from_numpy(arrays.labels.astype(np.int64))
        self.fingerprint = arrays.fingerprint
        self.split = split
        self.transform = fashion_mnist_transform(train_transform, tuple(size), mean, std)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.labels[i])


def calibration_subset(dataset: Dataset, size: int = 300, seed: int = 0) -> Subset:
    """A deterministic random subset of ``size`` items, for calibration; all of them (shuffled) when the dataset
    holds fewer, as ``nncf.quantize`` does with a larger ``subset_size`` (the quantizer reports the count it
    got). Pass the *train* split (never test)."""
    if getattr(dataset, "split", "train") not in ("train", None):
        raise ValueError("calibration data must come from the train split, not the test split")
    if size < 1:
        raise ValueError(f"calibration size must be >= 1, got {size}")
    if len(dataset) == 0:
        raise DataError("the calibration data holds no images: give a train split with at least one image")
    size = min(size, len(dataset))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, order[:size].tolist())


# ---------------------------------------------------------------- ImageNet-style folders
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_MODES = {1: "L", 3: "RGB"}


def class_index(class_dirs: list[str]) -> tuple[dict[str, int], str]:
    """Folder name -> label, and how: ImageNet wnids keep their index in the standard 1000-class order
    (timm's ``ImageNetInfo``), integer names keep their value, other names are sorted (0..K-1)."""
    if all(c.isdigit() for c in class_dirs):
        return {c: int(c) for c in class_dirs}, "integer folder names"
    if all(c.startswith("n") and c[1:].isdigit() and len(c) == 9 for c in class_dirs):
        from timm.data import ImageNetInfo

        order = {w: i for i, w in enumerate(ImageNetInfo().label_names())}
        unknown = [c for c in class_dirs if c not in order]
        if unknown:
            raise DataError(f"class folders {unknown[:3]} look like WordNet ids but are not ImageNet-1k classes")
        return {c: order[c] for c in class_dirs}, "ImageNet-1k wnid order"
    return {c: i for i, c in enumerate(sorted(class_dirs))}, "sorted folder names"


def image_folder_classes(folder: str | Path, check_images: bool = False) -> list[str]:
    """The class folder names of one ImageFolder split (``<folder>/<class>/<image>``); a DataError when the folder
    does not exist or has no class folders, and, with ``check_images``, when they hold no image at all (a scan that
    stops at the first image: cheap before a model is built)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist; pass a folder with one sub-folder per class")
    class_dirs = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{folder} has no class sub-folders; expected the ImageFolder layout "
                        f"<root>/<class>/<image>.jpg (class = wnid, integer label or any name)")
    if check_images and not any(p.name.lower().endswith(IMAGE_EXTENSIONS) for c in class_dirs
                                for p in (folder / c).rglob("*")):
        raise DataError(_no_images(folder))
    return class_dirs


def _no_images(folder: Path) -> str:
    return f"{folder}: the class folders hold no images ({', '.join(IMAGE_EXTENSIONS)})"


class ImageFolderSplit(Dataset):
    """One split folder (``<folder>/<class>/<image>``) as ``(tensor, label)`` items, images opened in the
    model's channel mode. Labels: :func:`class_index`. ``convert_channels`` False refuses images whose
    channel count (gray 1, colour 3, judged on the first image) is not the model's."""

    def __init__(self, folder: str | Path, transform: Callable, channels: int = 3, convert_channels: bool = False,
                 split: Optional[str] = None):
        from torchvision.datasets.folder import make_dataset

        folder = Path(folder)
        class_dirs = image_folder_classes(folder)
        if channels not in _MODES:
            raise DataError(f"the model takes {channels}-channel images; folders of images feed 1 or 3 channels")
        self.class_to_idx, self.label_order = class_index(class_dirs)
        self.samples = make_dataset(str(folder), self.class_to_idx, extensions=IMAGE_EXTENSIONS, allow_empty=True)
        if not self.samples:
            raise DataError(_no_images(folder))
        self.folder, self.transform, self.split = folder, transform, split
        self.mode = _MODES[channels]
        self.num_labels = max(self.class_to_idx.values()) + 1
        self.fingerprint = None
        first = self._open(self.samples[0][0])
        have = 1 if first.mode in ("L", "I", "I;16", "F", "1", "LA") else 3
        if have != channels and not convert_channels:
            kind = {1: "grayscale", 3: "colour"}
            raise DataError(f"{folder}: the images are {kind[have]} ({first.mode}, {self.samples[0][0]}) but the model "
                            f"takes {channels}-channel input: pass --convert-channels to convert every image to "
                            f"{kind[channels]}, or use a model built for {have} channel(s) (--model-kwargs in_chans={have})")

    @staticmethod
    def _open(path: str):
        from PIL import Image, UnidentifiedImageError

        try:
            with open(path, "rb") as f:
                img = Image.open(f)
                img.load()
                return img
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"cannot read image {path}: {e}; remove or replace the file") from None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        return self.transform(self._open(path).convert(self.mode)), label

    @property
    def targets(self) -> list[int]:
        return [s[1] for s in self.samples]


def foolbox_imagenet_samples(dest: str | Path, split: bool = False, wnids: bool = False) -> Path:
    """Lay out the 20 labelled ImageNet images shipped in PyPI's ``foolbox`` as an ImageFolder.

    Class folders are the integer labels, or with ``wnids`` the ImageNet wnids (``n01440764``...).
    With ``split``, images 0, 2, 4... go to ``dest/train`` and 1, 3, 5... to ``dest/val``.
    Needs ``pip install --no-deps foolbox==3.3.4``. Returns ``dest``.
    """
    import importlib.util

    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the ImageNet samples come from PyPI's foolbox: `pip install --no-deps foolbox==3.3.4`")
    src = Path(list(spec.submodule_search_locations)[0]) / "data"
    images = sorted(src.glob("imagenet_*.jpg"))
    if not images:
        raise DataError(f"no imagenet_*.jpg in {src}; reinstall foolbox==3.3.4")
    names = None
    if wnids:
        from timm.data import ImageNetInfo

        names = ImageNetInfo().label_names()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dest.parent))
    for i, img in enumerate(images):  # imagenet_<index>_<label>.jpg
        label = img.stem.split("_")[-1]
        folder = tmp / (("train" if i % 2 == 0 else "val") if split else "") / (names[int(label)] if names else label)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(img, folder / img.name)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(str(tmp), dest)
    return dest


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False,
                sampler: Optional[Sequence[int]] = None) -> torch.utils.data.DataLoader:
    """Single-process loader: the data lives in memory and both cores are busy computing."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
                                       sampler=sampler, num_workers=0)
