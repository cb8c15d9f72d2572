"""Datasets as in-memory numpy arrays: local IDX files, tensorflow-datasets, scikit-learn, MNIST-1D.

The sweep engine keeps the whole training set on the device (one ``device_put``, then batches
are gathered inside the jitted loop), so a dataset here is just four numpy arrays plus a little
metadata. :func:`load` produces them, from the first source that works:

* ``mnist``, ``fashion_mnist``: a local folder of the classic LeCun IDX files
  (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``) given as ``data_dir=`` or the
  environment variable ``JINIT_DATA_DIR`` (the folder itself, or a parent holding a ``mnist/`` or
  ``fashion_mnist/`` sub-folder); then a copy prepared by tensorflow-datasets, read without
  TensorFlow through ``tfds.data_source`` (ArrayRecord or Parquet; ``data_dir=`` or
  ``TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
* ``cifar10``: tensorflow-datasets only.
* ``digits``: scikit-learn's 8x8 handwritten digits (1,797 images that ship inside scikit-learn):
  the offline default. Pixel values 0..16 are divided by 16. The split is a deterministic
  stratified 1,437 / 360 train / test split (``train_test_split(test_size=360, stratify=y,
  random_state=0)``).
* ``mnist1d``: MNIST-1D (Greydanus & Kobak), generated locally by the ``mnist1d`` package with its
  default arguments (seed 42): 4,000 training and 1,000 test signals of length 40. Generation
  never downloads anything. The signals are standardized by the package (mean 0, std 1 over the
  generated set), not scaled to [0, 1].
* any other name: a dataset tensorflow-datasets has prepared locally (``kmnist``,
  ``emnist/digits``, ``svhn_cropped``, ...; ``tfds build NAME --file_format=array_record``), read
  like ``cifar10``: its ``image`` feature scaled to [0, 1] and its ``label`` feature.
  :func:`names` lists only the built-in names above.

A synthetic sequence task generated offline with a fixed seed, :func:`associative_recall`, is a
:class:`Dataset` of integer tokens (stored as float32) with one label per sequence.

Your own arrays (any task) become a :class:`Dataset` through :func:`from_arrays`:
classification, binary classification or regression (``Dataset.task``), its ``source`` a
SHA-256 fingerprint of the content. :func:`split_validation` holds out a fixed, seeded subset of
the training set as ``x_val``/``y_val``, the same examples for every model of a sweep.

Images are float32 in [0, 1] in NHWC layout (``(28, 28, 1)`` for MNIST, ``(32, 32, 3)`` for
CIFAR-10, ``(8, 8, 1)`` for digits), labels int32. Nothing ever falls back silently to another
dataset: when no source works, one error says what was tried and what to do.

What was slow to produce (parsed IDX files, tfds records, generated MNIST-1D) is cached under
:func:`cache_dir` as a folder of ``.npy`` files holding the final float32/int32 arrays, keyed by
the dataset, the source and a fingerprint of the source files (resolved paths, sizes,
modification times), so a changed folder is never served stale. A cache hit memory-maps the
files read-only instead of copying them (a cached MNIST loads in milliseconds). Entries are
written atomically (a temporary folder renamed into place) and may be deleted at any time.

Example:
  >>> from jinit import data
  >>> ds = data.load("digits")
  >>> ds.x_train.shape, ds.x_test.shape, ds.input_shape
  ((1437, 8, 8, 1), (360, 8, 8, 1), (8, 8, 1))
  >>> data.load("digits", flatten=True).x_train.shape
  (1437, 64)
  >>> data.split_validation(ds, val_size=200).num_val
  200

References:
  Y. LeCun, C. Cortes, C. J. C. Burges. The MNIST database of handwritten digits (IDX format).
  S. Greydanus, D. Kobak. Scaling down deep learning with MNIST-1D. ICML 2024.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import gzip
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Dataset",
    "associative_recall",
    "cache_dir",
    "describe",
    "from_arrays",
    "load",
    "names",
    "read_idx",
    "split_validation",
]

SOURCES = ("auto", "idx", "tfds", "sklearn", "mnist1d")

# The classic file names; some mirrors spell them with a dot (``train-images.idx3-ubyte``).
_IDX_FILES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

# IDX type codes (third byte of the magic number); multi-byte values are big-endian.
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Training-label counts of the real MNIST and Fashion-MNIST: used to catch a folder of one being
# loaded under the other's name (their IDX headers are identical).
_MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
_FASHION_TRAIN_COUNTS = (6000,) * 10


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    sources: tuple[str, ...]  # in the order `auto` tries them
    scale: float  # raw pixel values are divided by this (1.0: already float)
    tfds_name: str | None = None


_SPECS = {
    "mnist": _Spec("mnist", 10, (28, 28, 1), ("idx", "tfds"), 255.0, "mnist"),
    "fashion_mnist": _Spec(
        "fashion_mnist", 10, (28, 28, 1), ("idx", "tfds"), 255.0, "fashion_mnist"
    ),
    "cifar10": _Spec("cifar10", 10, (32, 32, 3), ("tfds",), 255.0, "cifar10"),
    "digits": _Spec("digits", 10, (8, 8, 1), ("sklearn",), 16.0),
    "mnist1d": _Spec("mnist1d", 10, (40,), ("mnist1d",), 1.0),
}

DIGITS_TEST_SIZE = 360
DIGITS_SEED = 0
MNIST1D_NUM_TRAIN = 4000
MNIST1D_NUM_TEST = 1000


TASKS = ("classification", "binary", "regression")

#: The most classes a classification task may have: labels are int32.
MAX_CLASSES = 2**31 - 1

_log = logging.getLogger("jinit.data")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A dataset held in memory as numpy arrays.

    Attributes:
      name: the dataset name: one of :func:`names`, a tensorflow-datasets name, or the name given
        to :func:`from_arrays` (default ``"arrays"``).
      x_train: float32 inputs, ``(n_train, *input_shape)``; images scaled to [0, 1].
      y_train: the targets: for ``classification`` and ``binary``, int32 labels in
        ``[0, num_classes)``, ``(n_train,)``; for ``regression``, float32 targets, ``(n_train,)`` or
        ``(n_train, num_classes)``.
      x_test: float32 inputs, ``(n_test, *input_shape)``.
      y_test: the test targets, like ``y_train``.
      num_classes: for ``classification``, the number of classes; for ``binary``, 2; for
        ``regression``, the number of regression targets per example (1 for targets of shape ``(n,)``).
      input_shape: shape of one example, e.g. ``(28, 28, 1)``, or ``(784,)`` when flattened.
      source: where the arrays came from: ``"idx:<folder>"``, ``"tfds:<data dir>"``,
        ``"sklearn"``, ``"mnist1d"`` (the original source, also when served from the cache), or
        ``"arrays:sha256:<hex digest>"`` for :func:`from_arrays` (a fingerprint of the content, so
        that two run folders can tell their data apart).
      from_cache: whether the arrays were read from the jinit cache.
      task: ``"classification"`` (every dataset :func:`load` gives), ``"binary"`` or
        ``"regression"``.
      x_val: float32 validation inputs held out from the training data (:func:`split_validation`,
        or given to :func:`from_arrays`), ``(n_val, *input_shape)``; None when there is no
        validation split.
      y_val: the validation targets, like ``y_train``; None when there is no validation split.

    The arrays are read-only; copy them to modify.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    source: str
    from_cache: bool = False
    task: str = "classification"
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])

    @property
    def num_val(self) -> int:
        """The number of validation examples (0 when there is no validation split)."""
        return 0 if self.x_val is None else int(self.x_val.shape[0])

    def __repr__(self) -> str:  # sizes and shapes, never the arrays
        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, num_classes={self.num_classes}, "
            f"input_shape={self.input_shape}, num_train={self.num_train}, num_val={self.num_val}, "
            f"num_test={self.num_test}, source={self.source!r})"
        )


def names() -> tuple[str, ...]:
    """Returns the built-in dataset names. (:func:`load` also accepts the name of any dataset
    tensorflow-datasets has prepared locally.)"""
    return tuple(_SPECS)


def canonical_name(name: str) -> str:
    """The built-in dataset ``name`` in its canonical spelling (``"MNIST"``, ``"fashion-mnist"`` ->
    ``"mnist"``, ``"fashion_mnist"``); ValueError naming the valid names for any other name."""
    return _spec(name).name


def cache_dir() -> Path:
    """Returns the cache folder: ``$JINIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/jinit``, else
    ``~/.cache/jinit``."""
    if os.environ.get("JINIT_CACHE_DIR"):
        return Path(os.environ["JINIT_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "jinit"
    return Path.home() / ".cache" / "jinit"


# --------------------------------------------------------------------------------------------
# IDX


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Reads one IDX file (gzipped or not) into a numpy array, validating it fully.

    Args:
      path: the file; gzip compression is detected from its first bytes, not its name.
      expected_magic: if given, the magic number the file must have (2051 for an image file,
        2049 for a label file).

    Returns:
      The array with the dimensions of the file header, in native byte order.

    Raises:
      ValueError: naming the file, when it is not a valid IDX file: a bad or unexpected magic
        number, a truncated or over-long body, or a corrupt gzip stream.
      FileNotFoundError: when the file does not exist.

    Example:
      >>> x = read_idx("train-images-idx3-ubyte.gz", expected_magic=2051)  # doctest: +SKIP
      >>> x.shape, x.dtype  # doctest: +SKIP
      ((60000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(f"{path}: not an IDX file (magic number {magic:#010x})")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"{path}: magic number {magic} where {expected_magic} was expected "
            f"({_IMAGES_MAGIC} = images, {_LABELS_MAGIC} = labels)"
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: {what}: header says shape {shape} ({expected} bytes) but the data has "
            f"{len(raw)} bytes"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in `folder`: None if it has none of them; an error if only some."""
    found, missing = {}, []
    for key, stems in _IDX_FILES.items():
        hits = [folder / f"{s}{ext}" for s in stems for ext in (".gz", "")]
        hits = [p for p in hits if p.is_file()]
        if hits:
            found[key] = hits[0]
        else:
            missing.append(stems[0] + "[.gz]")
    if not found:
        return None
    if missing:
        raise FileNotFoundError(f"{folder}: has IDX files but lacks {', '.join(missing)}")
    return found


def _idx_folder(spec: _Spec, data_dir: Path) -> tuple[Path, dict[str, Path]] | None:
    """The folder with the IDX files: `data_dir/<name>`, `data_dir/<name-with-dashes>`, then
    `data_dir` itself."""
    for folder in (data_dir / spec.name, data_dir / spec.name.replace("_", "-"), data_dir):
        if folder.is_dir():
            files = _find_idx_files(folder)
            if files is not None:
                return folder.resolve(), files
    return None


def _load_idx(spec: _Spec, files: dict[str, Path]) -> dict[str, np.ndarray]:
    arrays = {}
    for key, path in files.items():
        magic = _IMAGES_MAGIC if key.startswith("x") else _LABELS_MAGIC
        arrays[key] = read_idx(path, expected_magic=magic)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{files[f'x_{split}']} has {x.shape[0]} images but {files[f'y_{split}']} has "
                f"{y.shape[0]} labels"
            )
        if x.shape[1:] != spec.input_shape[:2]:
            raise ValueError(
                f"{files[f'x_{split}']}: images of {x.shape[1]}x{x.shape[2]} pixels, "
                f"{spec.name} has {spec.input_shape[0]}x{spec.input_shape[1]}"
            )
        if y.size and int(y.max()) >= spec.num_classes:
            raise ValueError(
                f"{files[f'y_{split}']}: label {int(y.max())} out of range for {spec.num_classes} "
                "classes"
            )
        arrays[f"x_{split}"] = x[..., None]  # NHWC with one channel
    _check_not_swapped(spec, arrays["y_train"], files["y_train"].parent)
    return arrays


def _check_not_swapped(spec: _Spec, y_train: np.ndarray, folder: Path) -> None:
    """MNIST and Fashion-MNIST IDX files look alike; their training-label counts do not."""
    others = {"mnist": ("fashion_mnist", _FASHION_TRAIN_COUNTS)}
    others["fashion_mnist"] = ("mnist", _MNIST_TRAIN_COUNTS)
    if spec.name not in others or y_train.shape[0] != 60000:
        return
    other, other_counts = others[spec.name]
    if tuple(np.bincount(y_train, minlength=10).tolist()) == other_counts:
        raise ValueError(
            f"{folder} holds {other} (its training-label counts are those of {other}), not "
            f"{spec.name}; point data_dir at a {spec.name} folder"
        )


def _idx_fingerprint(files: dict[str, Path]) -> list:
    out = []
    for key in sorted(files):
        p = files[key].resolve()
        st = p.stat()
        out.append([key, str(p), st.st_size, st.st_mtime_ns])
    return out


# --------------------------------------------------------------------------------------------
# tensorflow-datasets


def _tfds_dir(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return data_dir
    if os.environ.get("TFDS_DATA_DIR"):
        return Path(os.environ["TFDS_DATA_DIR"]).expanduser()
    return Path.home() / "tensorflow_datasets"


def _tfds_fingerprint(spec: _Spec, tfds_dir: Path) -> list | None:
    """Sizes and times of the prepared files, or None when there is no prepared copy on disk."""
    root = tfds_dir / spec.tfds_name.replace(":", "/")  # "kmnist:3.0.1" lives in kmnist/3.0.1/
    if not root.is_dir():
        return None
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out or None


def _read_split(
    source: Sequence[Any], chunk: int = 8192, what: str = "tfds"
) -> tuple[np.ndarray, np.ndarray]:
    """All examples of one tfds data source, read in batches, as (images, labels)."""
    n = len(source)
    images, labels = [], []
    batched = hasattr(source, "__getitems__")
    for start in range(0, n, chunk):
        keys = list(range(start, min(n, start + chunk)))
        if batched:
            try:
                examples = source.__getitems__(keys)
            except TypeError:  # a source without working batched reads: one record at a time
                batched = False
        if not batched:
            examples = [source[k] for k in keys]
        images.extend(np.asarray(ex["image"]) for ex in examples)
        labels.extend(int(ex["label"]) for ex in examples)
    if not images:
        raise ValueError(f"tfds data source {source!r} is empty")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        some = ", ".join(str(sh) for sh in sorted(shapes)[:3])
        raise ValueError(
            f"{what}: images of {len(shapes)} different shapes ({some}, ...); resize them to one "
            "shape and pass the arrays to jinit.data.from_arrays"
        )
    return np.stack(images), np.asarray(labels)


def _load_tfds(spec: _Spec, data_dir: Path | None) -> dict[str, np.ndarray]:
    train, test = _tfds_open(spec.tfds_name, _tfds_dir(data_dir))
    return _tfds_arrays(spec, train, test)


def _tfds_open(tfds_name: str, where: Path, unknown_error: bool = False) -> tuple[Any, Any]:
    """The train and test data sources of a prepared tfds copy under `where` (nothing read yet).

    Raises FileNotFoundError when there is no usable copy; with `unknown_error`, tfds's own
    ``DatasetNotFoundError`` (a ValueError) when tfds knows no dataset of that name at all.
    """
    import tensorflow_datasets as tfds

    # tfds logs a warning for a missing folder; the error raised below says it all
    absl_log = logging.getLogger("absl")
    absl_level = absl_log.level
    absl_log.setLevel(max(absl_level, logging.ERROR))
    try:
        train, test = tfds.data_source(
            tfds_name,
            split=["train", "test"],
            data_dir=str(where),  # tfds reads TFDS_DATA_DIR only when imported
            download=False,
        )
    except Exception as e:  # tfds raises KeyError / NotImplementedError / AssertionError here
        if unknown_error and isinstance(e, tfds.core.DatasetNotFoundError):
            raise
        folder = where / tfds_name.replace(":", "/")
        if not folder.exists():
            detail = f"{folder} does not exist"
        else:
            detail = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        raise FileNotFoundError(
            f"no prepared copy of {tfds_name} in ArrayRecord or Parquet format under "
            f"{where} ({detail})"
        ) from e
    finally:
        absl_log.setLevel(absl_level)
    return train, test


def _tfds_arrays(spec: _Spec, train: Any, test: Any) -> dict[str, np.ndarray]:
    """Reads both splits into (images, labels) arrays; `spec.input_shape` may hold None for a
    dimension the dataset does not fix."""
    arrays = {}
    for split, src in (("train", train), ("test", test)):
        x, y = _read_split(src, what=f"tfds {spec.tfds_name} {split}")
        if x.ndim == 3:
            x = x[..., None]
        shape = spec.input_shape
        if len(x.shape[1:]) != len(shape) or any(
            want is not None and got != want for got, want in zip(x.shape[1:], shape, strict=True)
        ):
            raise ValueError(
                f"tfds {spec.tfds_name} {split}: examples of shape {x.shape[1:]}, expected "
                f"{spec.input_shape}"
            )
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    return arrays


def _tfds_spec(name: str, info: Any) -> _Spec:
    """What :func:`load` needs to know of a tfds dataset that is not built in, from its
    ``DatasetInfo``: an ``image`` feature (integer pixels are divided by the dtype's maximum,
    255 for uint8, as the built-in datasets are) and a ``label`` class feature."""
    features = info.features
    keys = list(features.keys())
    advice = "read it yourself and pass numpy arrays to jinit.data.from_arrays"
    if "image" not in keys or "label" not in keys:
        raise ValueError(
            f"tfds dataset {name!r} has the features {keys}; jinit.data.load reads an 'image' "
            f"and a 'label' feature: {advice}"
        )
    num_classes = getattr(features["label"], "num_classes", None)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"the 'label' feature of tfds dataset {name!r} is not a class label "
            f"({type(features['label']).__name__}); {advice}"
        )
    image = features["image"]
    dtype = np.dtype(image.np_dtype)
    scale = float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0
    shape = tuple(image.shape)
    if len(shape) == 2:
        shape += (1,)
    return _Spec(name, num_classes, shape, ("tfds",), scale, name)


# --------------------------------------------------------------------------------------------
# scikit-learn digits and MNIST-1D


def _load_digits() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.uint8)[..., None]  # integer values 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        x, d.target, test_size=DIGITS_TEST_SIZE, stratify=d.target, random_state=DIGITS_SEED
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _load_mnist1d(num_train: int, num_test: int) -> dict[str, np.ndarray]:
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    total = num_train + num_test
    args = get_dataset_args()
    args.num_samples = -(-total // 10) * 10  # the package draws num_samples // 10 per class
    args.train_split = 1.0  # split here, so the default sizes give the package's own split
    # make_dataset seeds numpy's and Python's global generators; leave them as they were.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, y = d["x"].astype(np.float32), d["y"]
    return {
        "x_train": x[:num_train],
        "y_train": y[:num_train],
        "x_test": x[num_train:total],
        "y_test": y[num_train:total],
    }


# --------------------------------------------------------------------------------------------
# Cache


_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _cache_path(name: str, kind: str, where: str, key: Any) -> tuple[Path, str]:
    """``<name>-<kind>-<hash of where>-<hash of key>/``: one entry per source location."""
    text = json.dumps([name, kind, where, key], sort_keys=True)
    loc = hashlib.sha256(where.encode()).hexdigest()[:8]
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.]", "_", name)  # "emnist/digits:3.1.0" is not a folder name
    if safe != name:
        safe += "_" + hashlib.sha256(name.encode()).hexdigest()[:6]
    return cache_dir() / f"{safe}-{kind}-{loc}-{digest}", text


def _cache_read(entry: Path, key_text: str) -> tuple[dict[str, np.ndarray], str] | None:
    """The arrays of a cache entry, memory-mapped read-only (no copy, so a hit is fast)."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, RecursionError) as e:
        warnings.warn(f"ignoring unreadable cache entry {entry}: {e}", stacklevel=3)
        return None
    if not isinstance(meta, dict) or meta.get("key") != key_text:
        return None
    try:
        arrays = {}
        for k in _ARRAYS:
            arrays[k] = np.asarray(np.load(entry / f"{k}.npy", mmap_mode="r", allow_pickle=False))
    except (OSError, ValueError) as e:  # damaged entry: rebuild it
        warnings.warn(f"ignoring unreadable cache entry {entry}: {e}", stacklevel=3)
        return None
    return arrays, str(meta.get("source"))


def _cache_write(entry: Path, key_text: str, source: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes an entry atomically: a temporary folder, renamed into place when complete."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp"))
        try:
            for k in _ARRAYS:
                np.save(tmp / f"{k}.npy", arrays[k], allow_pickle=False)
            (tmp / "meta.json").write_text(json.dumps({"key": key_text, "source": source}))
            if entry.exists():  # a stale or damaged entry under the same name
                shutil.rmtree(entry, ignore_errors=True)
            try:
                os.rename(tmp, entry)
            except OSError:
                if not (entry / "meta.json").is_file():  # not just another writer winning
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        # Entries of the same source location made from older files are stale now.
        prefix = entry.name.rsplit("-", 1)[0]
        for old in entry.parent.glob(f"{prefix}-*"):
            if old != entry and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        warnings.warn(f"could not write the dataset cache {entry}: {e}", stacklevel=3)


# --------------------------------------------------------------------------------------------
# load


def _builtin(name: str) -> _Spec | None:
    """The built-in dataset `name` (case and ``-``/``_`` forgiven), or None."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {name!r}")
    return _SPECS.get(name.strip().lower().replace("-", "_"))


def _unknown(name: str, extra: str = "") -> str:
    """The start of the error for a name that is not built in: the built-in names, a close one."""
    key = name.strip().lower().replace("-", "_")
    close = difflib.get_close_matches(key, list(_SPECS), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown dataset {name!r}; {hint}valid names: {', '.join(_SPECS)}{extra}"


def _spec(name: str) -> _Spec:
    """The built-in dataset `name`; ValueError naming the valid names otherwise."""
    spec = _builtin(name)
    if spec is None:
        raise ValueError(_unknown(name))
    return spec


def _normalize(spec: _Spec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw arrays -> float32 inputs (images divided by `spec.scale`) and int32 labels."""
    out = {}
    for split in ("train", "test"):
        x = arrays[f"x_{split}"]
        if spec.scale != 1.0:
            x = np.divide(x, np.float32(spec.scale), dtype=np.float32)
        out[f"x_{split}"] = np.ascontiguousarray(x, dtype=np.float32)
        out[f"y_{split}"] = np.ascontiguousarray(arrays[f"y_{split}"], dtype=np.int32)
    return out


class _BadData(ValueError):
    """Arrays that no dataset may hold (an empty split, non-finite inputs, labels out of range)."""


def _finish(
    spec: _Spec,
    arrays: dict[str, np.ndarray],
    source: str,
    from_cache: bool,
    flatten: bool,
    num_train: int | None,
    num_test: int | None,
) -> Dataset:
    """Normalized arrays -> a Dataset of read-only arrays, subset and flattened as asked. Refuses (ValueError,
    naming the array) an empty split, inputs that are not finite (NaN/inf: a damaged cache entry, or data a
    user prepared) and labels outside ``0 .. num_classes - 1``."""
    out = {}
    for split, n in (("train", num_train), ("test", num_test)):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        where = f"{spec.name} ({source})"
        if x.shape[0] == 0 or y.shape[0] == 0:
            raise _BadData(f"the {split} set of {where} is empty (0 examples)")
        bad = x.size - int(np.count_nonzero(np.isfinite(x)))
        if bad:
            raise _BadData(
                f"x_{split} of {where} holds {bad} non-finite value(s) (NaN or inf) in {x.size}"
            )
        wrong = int(np.count_nonzero((y < 0) | (y >= spec.num_classes)))
        if wrong:
            raise _BadData(
                f"y_{split} of {where} holds {wrong} label(s) outside 0..{spec.num_classes - 1}"
            )
        if n is not None and spec.name != "mnist1d":
            if n > x.shape[0]:
                raise ValueError(
                    f"num_{split}={n} but {spec.name} has only {x.shape[0]} {split} examples"
                )
            x, y = x[:n], y[:n]
        if flatten:
            x = x.reshape(x.shape[0], -1)
        x, y = x.view(), y.view()
        x.setflags(write=False)
        y.setflags(write=False)
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return Dataset(
        name=spec.name,
        num_classes=spec.num_classes,
        input_shape=tuple(out["x_train"].shape[1:]),
        source=source,
        from_cache=from_cache,
        **out,
    )


def load(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    flatten: bool = False,
    cache: bool = True,
    num_train: int | None = None,
    num_test: int | None = None,
) -> Dataset:
    """Loads a dataset into memory as numpy arrays.

    Args:
      name: one of :func:`names`: ``mnist``, ``fashion_mnist``, ``cifar10``, ``digits``,
        ``mnist1d`` (case and ``-``/``_`` are forgiven); or the name of any dataset
        tensorflow-datasets has prepared under the data dir in ArrayRecord or Parquet format,
        e.g. ``"kmnist"``, ``"emnist/digits"``, ``"svhn_cropped:3.1.0"`` (prepare one with
        ``tfds build NAME --file_format=array_record``). Such a dataset must have an ``image``
        feature (integer pixels are divided by the dtype's maximum, 255 for uint8, so images are
        in [0, 1] like the built-in ones) and a ``label`` class feature, and ``train`` and
        ``test`` splits; it is cached like the built-in ones.
      data_dir: for ``mnist``/``fashion_mnist``, a folder with the four IDX files (or a parent
        with a ``<name>/`` sub-folder); defaults to ``$JINIT_DATA_DIR``. If it holds no IDX files
        it is also tried as the tensorflow-datasets data dir. For a dataset that is not built
        in, the tensorflow-datasets data dir (default ``$TFDS_DATA_DIR``, else
        ``~/tensorflow_datasets``). Ignored by ``digits`` and ``mnist1d``.
      source: ``"auto"`` tries local IDX files, then tensorflow-datasets (``mnist``,
        ``fashion_mnist``); ``"idx"`` or ``"tfds"`` forces one; ``"sklearn"`` (digits) and
        ``"mnist1d"`` name the only source of those datasets; a dataset that is not built in
        loads only from ``"tfds"`` (or ``"auto"``).
      flatten: give inputs as ``(n, features)`` instead of ``(n, H, W, C)``.
      cache: read and write the cache under :func:`cache_dir` (one folder of ``.npy`` arrays per
        dataset and source).
      num_train: for ``mnist1d``, how many training signals to generate (default 4000); for
        the others, keep only the first ``num_train`` training examples.
      num_test: likewise for the test set (``mnist1d`` default 1000).

    Returns:
      A :class:`Dataset`.

    Raises:
      ValueError: unknown name (neither built in nor known to tensorflow-datasets) or source, a
        tfds dataset without ``image``/``label`` features, or invalid data (a corrupt IDX file,
        mismatched image and label counts), naming the file.
      FileNotFoundError: when no source has the dataset; the message says what was tried and
        what to do.

    Example:
      >>> ds = load("mnist", data_dir="../shared/data/mnist")  # doctest: +SKIP
      >>> ds.x_train.shape, ds.source  # doctest: +SKIP
      ((60000, 28, 28, 1), 'idx:/work/shared/data/mnist')
    """
    spec = _builtin(name)
    if spec is None and not name.strip():
        raise ValueError(_unknown(name))
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
    sources = ("tfds",) if spec is None else spec.sources
    if source != "auto" and source not in sources:
        what = (
            f"dataset {spec.name!r}"
            if spec is not None
            else f"{name.strip()!r}, not a built-in dataset,"
        )
        raise ValueError(
            f"{what} cannot be loaded from source {source!r}; its sources: "
            f"{', '.join(('auto',) + sources)}"
        )
    for arg, val in (("num_train", num_train), ("num_test", num_test)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 1):
            raise ValueError(f"{arg} must be a positive integer, got {val!r}")
    finish = dict(flatten=flatten, num_train=num_train, num_test=num_test)

    if spec is None:  # not built in: any dataset tensorflow-datasets has prepared
        where = _tfds_dir(None if data_dir is None else Path(data_dir).expanduser())
        return _load_tfds_any(name.strip(), where, cache, finish)

    if spec.name == "digits":  # cached too: importing scikit-learn alone takes ~1 s
        key = ["digits", importlib.metadata.version("scikit-learn"), DIGITS_SEED, DIGITS_TEST_SIZE]
        return _cached(spec, "sklearn", key, "sklearn", cache, finish, _load_digits)
    if spec.name == "mnist1d":
        n_tr = MNIST1D_NUM_TRAIN if num_train is None else num_train
        n_te = MNIST1D_NUM_TEST if num_test is None else num_test
        key = ["mnist1d", importlib.metadata.version("mnist1d"), n_tr, n_te]
        return _cached(
            spec, "mnist1d", key, "mnist1d", cache, finish, lambda: _load_mnist1d(n_tr, n_te)
        )

    explicit_dir = data_dir is not None
    if data_dir is None and os.environ.get("JINIT_DATA_DIR"):
        data_dir = os.environ["JINIT_DATA_DIR"]
    data_dir = None if data_dir is None else Path(data_dir).expanduser()
    tried = []
    order = spec.sources if source == "auto" else (source,)
    for kind in order:
        if kind == "idx":
            if data_dir is None:
                tried.append("local IDX files: no data_dir given and JINIT_DATA_DIR is not set")
                continue
            if not data_dir.is_dir():
                tried.append(f"local IDX files: {data_dir} is not a folder")
                continue
            hit = _idx_folder(spec, data_dir)
            if hit is None:
                tried.append(f"local IDX files: none in {data_dir}")
                continue
            folder, files = hit
            src = f"idx:{folder}"
            key = ["idx", spec.name, _idx_fingerprint(files)]
            return _cached(
                spec, "idx", key, src, cache, finish, functools.partial(_load_idx, spec, files)
            )
        if kind == "tfds":
            tdir = data_dir if explicit_dir else None
            where = _tfds_dir(tdir)
            src = f"tfds:{where}"
            fp = _tfds_fingerprint(spec, where)
            key = None if fp is None else ["tfds", spec.name, str(where.resolve()), fp]
            try:
                return _cached(
                    spec, "tfds", key, src, cache, finish, functools.partial(_load_tfds, spec, tdir)
                )
            except FileNotFoundError as e:
                tried.append(f"tensorflow-datasets: {e}")
    advice = []
    if "idx" in order:
        files = ", ".join(stems[0] + ".gz" for stems in _IDX_FILES.values())
        advice.append(
            f"pass data_dir= / --data-dir DIR, a folder with the four IDX files ({files})"
        )
    if "tfds" in order:
        advice.append(
            f"prepare it once with tensorflow-datasets (tfds build {spec.tfds_name} "
            "--file_format=array_record; TFDS_DATA_DIR picks the folder)"
        )
    advice.append("use the offline dataset 'digits' (--dataset digits)")
    attempts = "; ".join(f"({i + 1}) {t}" for i, t in enumerate(tried))
    raise FileNotFoundError(
        f"could not load {spec.name!r}: tried {attempts}. To fix: {', or '.join(advice)}"
    )


def _load_tfds_any(name: str, where: Path, cache: bool, finish: dict) -> Dataset:
    """A dataset that is not built in, from a copy tensorflow-datasets prepared under `where`."""
    prepare = (
        f"prepare it once with tensorflow-datasets: tfds build {name} "
        "--file_format=array_record (the data dir: --data_dir / TFDS_DATA_DIR, or pass "
        "data_dir= / --data-dir DIR here)"
    )
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError(
            _unknown(
                name, " (other names load through tensorflow-datasets, which is not installed)"
            )
        ) from None
    try:
        train, test = _tfds_open(name, where, unknown_error=True)
    except tfds.core.DatasetNotFoundError:
        raise ValueError(
            _unknown(name, f", or a dataset tensorflow-datasets knows (it knows no {name!r})")
        ) from None
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"could not load {name!r}: it is not a built-in dataset ({', '.join(_SPECS)}) and "
            f"tensorflow-datasets has {e}. To fix: {prepare}"
        ) from None
    spec = _tfds_spec(name, train.dataset_info)
    fp = _tfds_fingerprint(spec, where)
    key = None if fp is None else ["tfds", name, str(where.resolve()), fp]
    produce = functools.partial(_tfds_arrays, spec, train, test)
    return _cached(spec, "tfds", key, f"tfds:{where}", cache, finish, produce)


def _cached(spec, kind, key, source, cache, finish, produce) -> Dataset:
    """Serves `key` from the cache, or produces the arrays, normalizes and caches them."""
    if cache and key is not None:
        path, key_text = _cache_path(spec.name, kind, source, key)
        hit = _cache_read(path, key_text)
        if hit is not None:
            arrays, cached_source = hit
            try:
                return _finish(spec, arrays, cached_source, True, **finish)
            except _BadData as e:  # a damaged entry: the files it was made from are checked again
                warnings.warn(f"ignoring the damaged cache entry {path}: {e}", stacklevel=3)
    arrays = _normalize(spec, produce())
    if cache and key is not None:
        _cache_write(path, key_text, source, arrays)
    return _finish(spec, arrays, source, False, **finish)


def describe(ds: Dataset) -> dict[str, Any]:
    """Summary statistics of a dataset: sizes, shapes, class counts, input mean/std/min/max.

    Args:
      ds: a :class:`Dataset`.

    Returns:
      A dict with ``name``, ``source``, ``from_cache``, ``task``, ``num_classes`` (for a
      regression: the number of targets), ``input_shape``, ``num_train``, ``num_test``,
      ``num_val`` (0 without a validation split), ``train_counts``, ``test_counts``,
      ``val_counts`` (lists, one count per class; None for a regression, and ``val_counts`` None
      without a validation split), ``mean``, ``std``, ``min``, ``max`` of the training inputs,
      and for a regression ``target_mean``, ``target_std``, ``target_min``, ``target_max`` of the
      training targets (all targets together).
    """
    x = ds.x_train.reshape(-1)
    mean, std = _mean_std(x)
    classes = ds.task != "regression"

    def counts(y):
        if y is None or not classes:
            return None
        return np.bincount(y, minlength=ds.num_classes).tolist()

    out = {
        "name": ds.name,
        "source": ds.source,
        "from_cache": ds.from_cache,
        "task": ds.task,
        "num_classes": ds.num_classes,
        "input_shape": ds.input_shape,
        "num_train": ds.num_train,
        "num_test": ds.num_test,
        "num_val": ds.num_val,
        "train_counts": counts(ds.y_train),
        "test_counts": counts(ds.y_test),
        "val_counts": counts(ds.y_val),
        "mean": mean,
        "std": std,
        "min": float(x.min()),
        "max": float(x.max()),
    }
    if not classes:
        y = ds.y_train.reshape(-1)
        t_mean, t_std = _mean_std(y)
        out.update(
            target_mean=t_mean,
            target_std=t_std,
            target_min=float(y.min()),
            target_max=float(y.max()),
        )
    return out


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of a flat array, in two passes over float64 chunks: exact
    enough, without a float64 copy of the whole set."""
    chunks = [x[i : i + (1 << 20)] for i in range(0, x.size, 1 << 20)]
    mean = sum(float(c.sum(dtype=np.float64)) for c in chunks) / x.size
    var = (
        sum(float(np.square(np.subtract(c, mean, dtype=np.float64)).sum()) for c in chunks) / x.size
    )
    return mean, var**0.5


# --------------------------------------------------------------------------------------------
# Your own arrays


def _as_array(value: Any, what: str) -> np.ndarray:
    """`value` as a numpy array of real numbers; errors name `what`, its shape and dtype, never its values."""
    if value is None:
        raise TypeError(f"{what} is missing (None)")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise TypeError(
            f"{what} is not an array of numbers ({type(value).__name__}: {str(e).splitlines()[0][:120]})"
        ) from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{what} has dtype {arr.dtype} (shape {arr.shape}); expected numbers (bool, int or float)"
        )
    if arr.ndim == 0:
        raise ValueError(f"{what} is a scalar; expected one row per example")
    return arr


def _labels(y: np.ndarray, what: str, task: str) -> np.ndarray:
    """Class labels -> int32 of shape (n,) (a column (n, 1) is accepted)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = (
            " (2-D labels are taken as one-hot rows only when each row is a single 1 and zeros; for other "
            "rows pass y.argmax(axis=1))"
            if y.ndim == 2
            else ""
        )
        raise ValueError(
            f"{what} has shape {y.shape}; {task} labels are one integer per example, shape (n,){hint}"
        )
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise ValueError(
                f"{what} holds non-finite values (NaN or inf); {task} labels are integers"
            )
        if not np.array_equal(y, np.round(y)):
            raise ValueError(
                f"{what} has dtype {y.dtype} with non-integer values; {task} labels are integers "
                "(for real-valued targets use task='regression')"
            )
    if y.size and (y.min() < 0 or y.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{what} holds labels below 0 or above 2**31 - 1; labels are 0, 1, 2, ...")
    return y.astype(np.int32)


def _one_hot(y: np.ndarray) -> np.ndarray | None:
    """The labels ``y.argmax(axis=1)`` when ``y`` is one-hot rows (2-D, at least 2 columns, every value 0 or 1,
    exactly one 1 per row), else None."""
    if y.ndim != 2 or y.shape[1] < 2 or not y.size:
        return None
    if not np.all((y == 0) | (y == 1)) or not np.all(np.count_nonzero(y, axis=1) == 1):
        return None
    return np.argmax(y, axis=1).astype(np.int32)


def _class_like(ys: dict[str, np.ndarray]) -> tuple[int, int, int] | None:
    """For float targets of one column that all are whole numbers from 0 or 1 on -- class labels stored as floats,
    or numeric targets? -- their smallest and largest value and the number of distinct training values; None
    for targets that are clearly continuous (a fraction, a negative value, a smallest value above 1) or not one
    column."""
    cols = [y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y for y in ys.values()]
    if any(y.dtype.kind != "f" or y.ndim != 1 for y in cols):
        return None
    for y in cols:
        if not np.all(np.isfinite(y)) or not np.array_equal(y, np.round(y)):
            return None
    lo, hi = min(float(y.min()) for y in cols), max(float(y.max()) for y in cols)
    if lo not in (0.0, 1.0):
        return None
    return int(lo), int(hi), int(np.unique(cols[0]).size)


def _infer_task(ys: dict[str, np.ndarray]) -> str:
    """The task of ``from_arrays(..., task=None)``: ``regression`` for float targets that are clearly continuous,
    ``classification`` for integer or bool labels and for one-hot rows (with a notice); whole-number float labels
    are refused (classes or numbers: the caller says which)."""
    y = ys["train"]
    if _one_hot(y) is not None:
        _log.warning(
            "y_train holds one-hot rows (%d columns): trained as classification of the labels "
            "y.argmax(axis=1); pass task='classification' to say so (no notice), or task='regression' to fit "
            "%d targets",
            y.shape[1],
            y.shape[1],
        )
        return "classification"
    if y.dtype.kind != "f":
        return "classification"
    like = _class_like(ys)
    if like is not None:
        lo, hi, distinct = like
        raise ValueError(
            f"y_train is {y.dtype} but every target is a whole number from {lo} to {hi} ({distinct} distinct "
            f"values): class labels or numbers? pass task='classification' to train them as class labels, or "
            "task='regression' to fit them as numbers"
        )
    return "regression"


def _class_targets(
    ys: dict[str, np.ndarray], task: str, num_classes: int | None
) -> tuple[dict[str, np.ndarray], int]:
    """The int32 labels of every split (one-hot rows become ``argmax`` labels) and the number of classes."""
    out, widths = {}, {}
    for split, y in ys.items():
        labels = _one_hot(y)
        if labels is None:
            labels = _labels(y, f"y_{split}", task)
        else:
            widths[split] = y.shape[1]
        out[f"y_{split}"] = labels
    if widths:
        first, width = next(iter(widths.items()))
        for split, w in widths.items():
            if w != width:
                raise ValueError(
                    f"y_{split} is one-hot with {w} columns but y_{first} with {width}; one-hot rows have "
                    "one column per class in every split"
                )
        if num_classes is not None and num_classes != width:
            raise ValueError(
                f"y_{first} is one-hot with {width} columns but num_classes={num_classes}; one-hot rows have "
                "one column per class"
            )
    top = max(int(y.max()) for y in out.values())
    if task == "binary":
        if num_classes is not None and num_classes != 2:
            raise ValueError(f"num_classes={num_classes} but a binary task has 2 classes")
        classes = 2
    elif num_classes is None:
        classes = max(top + 1, *widths.values()) if widths else top + 1
        if classes < 2:
            raise ValueError(
                "the labels hold a single class (0); pass num_classes= if there are more"
            )
    else:
        classes = int(num_classes)
    for name, y in out.items():
        wrong = int(np.count_nonzero(y >= classes))
        if wrong:
            valid = "0 or 1" if task == "binary" else f"0..{classes - 1}"
            raise ValueError(
                f"{name} holds {wrong} label(s) outside {valid} (the largest is {int(y.max())}; "
                f"{task} with {classes} classes)"
            )
    return out, classes


def _regression_targets(
    ys: dict[str, np.ndarray], num_classes: int | None
) -> tuple[dict[str, np.ndarray], int]:
    """The float32 targets of every split and their number per example."""
    out = {}
    for split, y in ys.items():
        if y.ndim > 2:
            raise ValueError(
                f"y_{split} has shape {y.shape}; regression targets are (n,) or (n, targets)"
            )
        with np.errstate(over="ignore"):
            y = y.astype(np.float32)
        bad = y.size - int(np.count_nonzero(np.isfinite(y)))
        if bad:
            raise ValueError(
                f"y_{split} holds {bad} non-finite value(s) (NaN or inf, also after conversion "
                f"to float32) in {y.size}"
            )
        if y.shape[1:] != ys["train"].shape[1:]:
            raise ValueError(
                f"y_{split} has targets of shape {y.shape[1:]} but y_train {ys['train'].shape[1:]}"
            )
        out[f"y_{split}"] = y
    d = 1 if ys["train"].ndim == 1 else int(ys["train"].shape[1])
    if num_classes is not None and num_classes != d:
        raise ValueError(
            f"num_classes={num_classes} but y_train has {d} regression target(s) per example "
            f"(shape {ys['train'].shape}); for regression num_classes is the number of targets"
        )
    return out, d


def _fingerprint(arrays: dict[str, np.ndarray | None], task: str, num_classes: int) -> str:
    """SHA-256 of the final arrays (name, dtype, shape and bytes of each), the task and the class count."""
    h = hashlib.sha256(json.dumps(["jinit.data.from_arrays/1", task, num_classes]).encode())
    for key, arr in arrays.items():
        if arr is None:
            h.update(f"{key}:none;".encode())
            continue
        h.update(f"{key}:{arr.dtype.str}:{list(arr.shape)};".encode())
        h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return h.hexdigest()


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr).view()
    arr.setflags(write=False)
    return arr


def from_arrays(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    task: str | None = None,
    num_classes: int | None = None,
    name: str = "arrays",
    x_val: Any = None,
    y_val: Any = None,
) -> Dataset:
    """A :class:`Dataset` from your own arrays (numpy, JAX, lists, or anything ``np.asarray`` takes).

    Inputs become float32 (any shape per example: ``(n, features)``, ``(n, H, W, C)``, ...; they
    are not rescaled). Targets become int32 labels (``classification``, ``binary``) or float32
    (``regression``).

    Args:
      x_train: training inputs, ``(n_train, *input_shape)``.
      y_train: training targets: labels ``(n_train,)`` (a column ``(n_train, 1)`` is accepted for
        labels, and one-hot rows ``(n_train, num_classes)``: a single 1 and zeros in every row, taken as the
        labels ``y.argmax(axis=1)``), or regression targets ``(n_train,)`` / ``(n_train, d)``.
      x_test: test inputs, ``(n_test, *input_shape)``.
      y_test: test targets, like ``y_train``.
      task: ``"classification"`` (softmax over ``num_classes`` outputs), ``"binary"`` (labels 0/1,
        one output), ``"regression"``, or None to infer it from the targets: integer or bool labels ->
        ``"classification"`` (also with two classes: ``"binary"`` is only used when asked for, since it
        needs a model with one output instead of two); one-hot rows (of any dtype, as Keras' ``to_categorical``
        writes them) -> ``"classification"``, with a notice (a warning of the ``jinit.data`` logger) that
        ``task="regression"`` fits them as numbers instead; float targets that are clearly continuous (a
        fraction, a negative value, or whole numbers from 2 on, like counts of 25..346) -> ``"regression"``.
        Float targets of one column whose values are all whole numbers from 0 or 1 on (class labels read
        from a CSV file, or integer-valued numbers?) are refused: the error names both ``task=`` values.
      num_classes: for ``classification``, the number of classes (default: the largest label in
        any split plus one); for ``binary``, 2 if given; for ``regression``, the number of targets
        ``d`` if given (1 for targets of shape ``(n,)``). At most 2**31 - 1 (labels are int32).
      name: a name for the dataset (recorded in run folders and plot titles).
      x_val: validation inputs (optional; then ``y_val`` too). To hold validation data out of
        the training set instead, see :func:`split_validation`.
      y_val: validation targets, like ``y_train``.

    Returns:
      A :class:`Dataset` of read-only arrays whose ``source`` is ``"arrays:sha256:<digest>"``: the
      SHA-256 of the final arrays (dtype, shape and bytes of each, in the order train, test,
      validation), the task and ``num_classes``, so equal data always gets the same source and
      different data a different one.

    Raises:
      ValueError: one line naming the array and saying what is wrong with its shape, dtype or
        values (the values themselves are never printed): a row count that differs between inputs
        and targets ("x_train has 100 rows but y_train 99"), input shapes that differ between
        splits, an empty split or examples of 0 values, NaN or inf, labels below 0 or at least
        ``num_classes``, ``binary`` labels other than 0/1, one-hot rows whose width is not ``num_classes``,
        whole-number float labels without ``task=`` (see ``task``), an unknown task.
      TypeError: an array that is not numbers (strings, objects), or a missing one.

    Example:
      >>> from sklearn.datasets import load_diabetes  # doctest: +SKIP
      >>> x, y = load_diabetes(return_X_y=True)  # doctest: +SKIP
      >>> ds = from_arrays(x[:342], y[:342], x[342:], y[342:], name="diabetes")  # doctest: +SKIP
      >>> ds.task, ds.num_classes, ds.input_shape  # doctest: +SKIP
      ('regression', 1, (10,))
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if task is not None and task not in TASKS:
        raise ValueError(
            f"unknown task {task!r}; valid tasks: {', '.join(TASKS)} (or None to infer)"
        )
    if (x_val is None) != (y_val is None):
        given, missing = ("x_val", "y_val") if y_val is None else ("y_val", "x_val")
        raise ValueError(f"{given} was given without {missing}; pass both or neither")
    if num_classes is not None and (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or not 1 <= num_classes <= MAX_CLASSES
    ):
        raise ValueError(
            f"num_classes must be a positive integer of at most 2**31 - 1 (labels are int32), got "
            f"{num_classes!r}"
        )

    splits = [("train", x_train, y_train), ("test", x_test, y_test)]
    if x_val is not None:
        splits.append(("val", x_val, y_val))
    xs, ys = {}, {}
    for split, x, y in splits:
        x, y = _as_array(x, f"x_{split}"), _as_array(y, f"y_{split}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x_{split} has {x.shape[0]} rows but y_{split} {y.shape[0]}")
        if x.shape[0] == 0:
            raise ValueError(f"x_{split} and y_{split} are empty (0 rows)")
        if x.ndim == 1:
            raise ValueError(
                f"x_{split} has shape {x.shape}: one number per example; inputs are (n, features) "
                "(for a single feature pass x.reshape(-1, 1))"
            )
        if 0 in x.shape[1:]:
            raise ValueError(
                f"x_{split} has shape {x.shape}: examples of 0 values; inputs need at least one feature"
            )
        if 0 in y.shape[1:]:
            raise ValueError(
                f"y_{split} has shape {y.shape}: no target per example; pass one label (n,) or targets "
                "(n, d) with d >= 1"
            )
        xs[split], ys[split] = x, y
    for split in xs:
        if xs[split].shape[1:] != xs["train"].shape[1:]:
            raise ValueError(
                f"x_{split} has examples of shape {xs[split].shape[1:]} but x_train "
                f"{xs['train'].shape[1:]}"
            )

    if task is None:
        task = _infer_task(ys)

    out: dict[str, np.ndarray | None] = {"x_val": None, "y_val": None}
    for split, x in xs.items():
        with np.errstate(over="ignore"):  # too large for float32 becomes inf, refused below
            x = x.astype(np.float32)
        bad = x.size - int(np.count_nonzero(np.isfinite(x)))
        if bad:
            raise ValueError(
                f"x_{split} holds {bad} non-finite value(s) (NaN or inf, also after conversion to "
                f"float32) in {x.size}"
            )
        out[f"x_{split}"] = x
    if task == "regression":
        targets, classes = _regression_targets(ys, num_classes)
    else:
        targets, classes = _class_targets(ys, task, num_classes)
    out.update(targets)

    ordered = {k: out[k] for k in ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val")}
    digest = _fingerprint(ordered, task, classes)
    arrays = {k: None if v is None else _read_only(v) for k, v in ordered.items()}
    return Dataset(
        name=name,
        num_classes=classes,
        input_shape=tuple(arrays["x_train"].shape[1:]),
        source=f"arrays:sha256:{digest}",
        from_cache=False,
        task=task,
        **arrays,
    )


def split_validation(
    ds: Dataset,
    *,
    val_size: int | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
) -> Dataset:
    """Holds out a fixed random subset of the training set as the validation set.

    The subset is ``np.random.default_rng(seed).permutation(ds.num_train)[:val_size]``: a pure
    function of ``seed`` and the number of training examples, so every call (every model of a
    sweep, every process, every rerun) holds out the same examples. Both parts keep the order of
    the original training set. The split is not stratified.

    Args:
      ds: a :class:`Dataset` without a validation split.
      val_size: how many training examples to hold out (``1 .. num_train - 1``).
      val_fraction: or which fraction of them, in ``(0, 1)``: ``round(val_fraction * num_train)``
        examples (Python's ``round``: halves go to the even neighbour), which must come to at
        least 1 and leave at least 1 for training.
      seed: the seed of the permutation (a non-negative integer).

    Returns:
      A :class:`Dataset` with ``num_train - val_size`` training examples and ``x_val``/``y_val``
      holding the others; every other field (name, source, task, test set) as in ``ds``.

    Raises:
      ValueError: both or neither of ``val_size`` and ``val_fraction``, a size or fraction out of
        range (naming the training-set size), a bad seed, or a ``ds`` that already has a
        validation split.

    Example:
      >>> ds = split_validation(load("digits"), val_size=200)  # doctest: +SKIP
      >>> ds.num_train, ds.num_val  # doctest: +SKIP
      (1237, 200)
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"ds must be a jinit.data.Dataset, got {type(ds).__name__}")
    if (val_size is None) == (val_fraction is None):
        raise ValueError("give exactly one of val_size and val_fraction")
    if ds.x_val is not None:
        raise ValueError(
            f"{ds.name} already has a validation split ({ds.num_val} examples); split it only once"
        )
    n = ds.num_train
    if val_size is not None:
        if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)):
            raise ValueError(f"val_size must be an integer, got {val_size!r}")
        size = int(val_size)
        if not 1 <= size <= n - 1:
            raise ValueError(
                f"val_size={size} is out of range: {ds.name} has {n} training examples, so "
                f"val_size must be 1..{n - 1} (at least one example stays for training)"
            )
    else:
        if isinstance(val_fraction, bool) or not isinstance(
            val_fraction, (int, float, np.floating)
        ):
            raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
        if not 0.0 < float(val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        size = int(round(float(val_fraction) * n))
        if not 1 <= size <= n - 1:
            raise ValueError(
                f"val_fraction={val_fraction} of {n} training examples gives {size} validation "
                f"examples; it must give 1..{n - 1}"
            )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    perm = np.random.default_rng(int(seed)).permutation(n)
    val_idx, train_idx = np.sort(perm[:size]), np.sort(perm[size:])
    return dataclasses.replace(
        ds,
        x_train=_read_only(ds.x_train[train_idx]),
        y_train=_read_only(ds.y_train[train_idx]),
        x_val=_read_only(ds.x_train[val_idx]),
        y_val=_read_only(ds.y_train[val_idx]),
    )


def associative_recall(
    n_train: int = 2000,
    n_test: int = 500,
    *,
    vocab: int = 32,
    n_pairs: int = 4,
    seed: int = 0,
) -> Dataset:
    """Associative recall: read ``n_pairs`` key-value pairs, then a query key, and predict its value.

    Each sequence is ``k_1 v_1 k_2 v_2 ... k_n v_n q`` (length ``2 n_pairs + 1``): the keys are
    distinct tokens drawn from ``0 .. vocab/2 - 1``, the values tokens drawn (with repetition) from
    ``vocab/2 .. vocab - 1``, and the query ``q`` is one of the keys, chosen uniformly; the label
    is the value that followed ``q``. A model reads the last position's logits as a
    ``vocab``-way classification (chance ``2 / vocab``: the label is always a value token, one of
    ``vocab / 2``). Solving it needs attention from the last position to the token after the
    matching key (an induction-head circuit), which is why it is a standard small probe of
    sequence models.

    Every array is a pure function of the arguments: ``np.random.default_rng(seed)`` draws the
    training set, then the test set, so the same call gives the same data on any machine, and the
    test sequences are fresh draws from the same distribution (a sequence may occur in both sets
    by chance when the task is small).

    Args:
      n_train: number of training sequences (>= 1).
      n_test: number of test sequences (>= 1).
      vocab: number of token ids, even, with ``vocab / 2 >= n_pairs`` (and >= 4).
      n_pairs: key-value pairs per sequence (>= 1).
      seed: seed of the generator (a non-negative integer).

    Returns:
      A :class:`Dataset` (:func:`from_arrays`, ``task="classification"``, ``num_classes=vocab``)
      named ``associative_recall``, whose inputs are the token ids as float32 of shape
      ``(n, 2 n_pairs + 1)`` (cast them to int in the model) and labels int32 in
      ``vocab/2 .. vocab - 1``.

    Raises:
      ValueError: a bad size, vocabulary, pair count or seed, naming the value.

    References:
      Ba et al. Using fast weights to attend to the recent past. NeurIPS 2016 (associative retrieval).
      Olsson et al. In-context learning and induction heads. Transformer Circuits Thread, 2022.
      Fu et al. Hungry hungry hippos: towards language modeling with state space models. ICLR 2023.

    Example:
      >>> ds = associative_recall(8, 4, vocab=16, n_pairs=3, seed=0)
      >>> ds.x_train.shape, ds.num_classes
      ((8, 7), 16)
    """
    for field, value, low in (
        ("n_train", n_train, 1),
        ("n_test", n_test, 1),
        ("n_pairs", n_pairs, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(
                f"associative_recall: {field} must be an integer >= {low}, got {value!r}"
            )
    if (
        isinstance(vocab, bool)
        or not isinstance(vocab, (int, np.integer))
        or vocab < 4
        or vocab % 2
    ):
        raise ValueError(f"associative_recall: vocab must be an even integer >= 4, got {vocab!r}")
    if n_pairs > vocab // 2:
        raise ValueError(
            f"associative_recall: n_pairs={n_pairs} needs {n_pairs} distinct keys but vocab={vocab} "
            f"has only {vocab // 2} (vocab / 2); use n_pairs <= {vocab // 2} or a larger vocab"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"associative_recall: seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    half = vocab // 2

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        keys = np.argsort(rng.random((n, half)), axis=1)[:, :n_pairs]  # distinct keys per row
        values = rng.integers(half, vocab, size=(n, n_pairs))
        which = rng.integers(0, n_pairs, size=n)
        x = np.empty((n, 2 * n_pairs + 1), np.int64)
        x[:, 0:-1:2], x[:, 1:-1:2] = keys, values
        rows = np.arange(n)
        x[:, -1] = keys[rows, which]
        return x, values[rows, which]

    x_train, y_train = draw(int(n_train))
    x_test, y_test = draw(int(n_test))
    return from_arrays(
        x_train,
        y_train,
        x_test,
        y_test,
        task="classification",
        num_classes=int(vocab),
        name="associative_recall",
    )
