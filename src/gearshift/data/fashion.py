"""Fashion-MNIST (Xiao et al., 2017) from the original IDX `.gz` files, parsed with numpy.

The Debian package `dataset-fashion-mnist` installs the four files in
`/usr/share/datasets/fashion-mnist/`; pass another folder as `data_dir` to read them elsewhere
(library code never reads the environment). Images come back as float32 in [0, 1] (raw pixel
/ 255), shape (N, 1, 28, 28); labels as int64 class indices into `CLASSES`.

The fashion models expect normalised input: `(pixel / 255 - MEAN) / STD` (`normalize`), the
training set's own pixel mean and standard deviation.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from gearshift.errors import SpecError

DEFAULT_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
INSTALL_HINT = f"apt-get update && apt-get install -y {DEBIAN_PACKAGE}"
CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IMAGE_SHAPE = (1, 28, 28)
SCALE = 1.0 / 255.0
MEAN = 0.2860  # training-set pixel mean after scaling to [0, 1]
STD = 0.3530  # training-set pixel standard deviation after scaling to [0, 1]
Split = Literal["train", "test"]
_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# IDX type codes -> big-endian numpy dtypes (LeCun's format description).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class LabelledImages:
    """`images`: float32 (N, 1, 28, 28) in [0, 1]; `labels`: int64 (N,) indices into CLASSES."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int) -> LabelledImages:
        """The first `n` items (all of them if there are fewer)."""
        return LabelledImages(self.images[:n], self.labels[:n])


def parse_idx(raw: bytes, where: str = "IDX data") -> np.ndarray:
    """Decode one uncompressed IDX file: magic (0, 0, type, ndim), ndim big-endian uint32 sizes,
    then the values in C order. Returns an array in native byte order."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise SpecError(f"{where} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise SpecError(f"{where}: header says {shape} ({expected} bytes), file has {len(raw)}")
    values = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed if its name ends in `.gz`."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return parse_idx(f.read(), str(path))


def missing_files(data_dir: Path = DEFAULT_FASHION_DIR) -> list[Path]:
    """The Fashion-MNIST files absent from `data_dir` (empty when the data set is complete)."""
    names = [name for pair in _FILES.values() for name in pair]
    return [Path(data_dir) / n for n in names if not (Path(data_dir) / n).is_file()]


def is_installed(data_dir: Path = DEFAULT_FASHION_DIR) -> bool:
    return not missing_files(data_dir)


def load_fashion(split: Split, data_dir: Path = DEFAULT_FASHION_DIR) -> LabelledImages:
    """The 60,000 `train` or 10,000 `test` images; SpecError saying how to install if absent."""
    if split not in _FILES:
        raise SpecError(f"unknown Fashion-MNIST split {split!r}; choose train or test")
    data_dir = Path(data_dir)
    image_file, label_file = (data_dir / n for n in _FILES[split])
    for path in (image_file, label_file):
        if not path.is_file():
            raise SpecError(
                f"Fashion-MNIST file {path} not found: install the Debian package "
                f"{DEBIAN_PACKAGE} (`{INSTALL_HINT}`, as root) or pass the folder holding "
                "the IDX .gz files"
            )
    pixels, labels = read_idx(image_file), read_idx(label_file)
    if pixels.ndim != 3 or pixels.shape[1:] != IMAGE_SHAPE[1:] or len(labels) != len(pixels):
        raise SpecError(f"{image_file}: expected N x 28 x 28 images and N labels, "
                        f"got {pixels.shape} and {labels.shape}")
    images = (pixels.astype(np.float32) * np.float32(SCALE))[:, None, :, :]
    return LabelledImages(images, labels.astype(np.int64))


def normalize(images: np.ndarray, mean: float = MEAN, std: float = STD) -> np.ndarray:
    """`(images - mean) / std` as float32: the models' input from images in [0, 1]."""
    return ((images - np.float32(mean)) / np.float32(std)).astype(np.float32, copy=False)
