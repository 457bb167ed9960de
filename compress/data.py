"""Datasets for training under an energy budget.

``load_dataset`` turns a dataset name (and, for local copies, a folder) into a
:class:`DatasetPair` of train and test datasets shaped for the model's input.
In-memory sets (``digits``, ``fashion-mnist``, ``mnist``, ``cifar10``) come back
as ``TensorDataset`` of float32 images ``(N, C, H, W)``, normalized per channel
with the train split's mean and standard deviation, and int64 labels.
``imagefolder`` returns lazily loaded torchvision ``ImageFolder`` datasets.

Dataset files are untrusted input. The file readers (:func:`read_idx`,
:func:`read_cifar10_batch`, and the image loader behind ``imagefolder``) validate
every header, size and value they rely on and raise :class:`DataFileError` naming
the file, in one line. CIFAR-10 batches are pickles, read by an unpickler that
allows only the numpy globals an array needs and calls none of them, so a crafted
batch cannot run code.
"""

from __future__ import annotations

import gzip
import math
import numbers
import os
import pickle
import re
import reprlib
import struct
import zlib
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

__all__ = [
    "DATASET_NAMES",
    "FASHION_MNIST_ROOT",
    "DataFileError",
    "DatasetNotFoundError",
    "DatasetPair",
    "MissingDependencyError",
    "load_dataset",
    "read_cifar10_batch",
    "read_idx",
]

DATASET_NAMES = ("digits", "fashion-mnist", "mnist", "cifar10", "imagefolder")

#: Where Debian's ``dataset-fashion-mnist`` package installs its four gzipped IDX files.
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")

_FASHION_MNIST_HINT = (
    "install it with `apt-get install dataset-fashion-mnist` (it puts the files in "
    f"{FASHION_MNIST_ROOT}) or pass --data-root (root=) pointing at a folder "
    "with the four IDX files"
)

# (images, labels) base names of the MNIST-style IDX files; each may also end in ".gz".
_IDX_TRAIN = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_IDX_TEST = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# IDX type code (third magic byte) -> big-endian element type.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

_CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST_FILE = "test_batch"
_CIFAR10_SHAPE = (3, 32, 32)

# The only globals a CIFAR-10 batch may name, and the kind of stand-in each unpickles to. Python 2's
# cPickle (the distributed files) and numpy 1 write numpy.core.multiarray._reconstruct, numpy 2 writes
# numpy._core; pickle protocol 5 (Python 3.14's default) rebuilds an array with numeric._frombuffer.
_CIFAR10_GLOBALS = {
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    **{(f"{core}.multiarray", "_reconstruct"): "reconstruct" for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.numeric", "_frombuffer"): "frombuffer" for core in ("numpy.core", "numpy._core")},
}

# Keys and names from a crafted file can be any length; messages quote at most this much of each.
_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = 80

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGEFOLDER_DEFAULT_SHAPE = (3, 224, 224)

_NUM_CLASSES = 10  # digits, fashion-mnist, mnist and cifar10 all have ten classes


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where they were looked for."""


class DataFileError(ValueError):
    """A dataset file exists but is corrupt, truncated or inconsistent."""


class MissingDependencyError(ImportError):
    """An optional package needed by a dataset is not installed."""


@dataclass(frozen=True)
class DatasetPair:
    """Train and test datasets with what a model needs to know about them.

    Attributes
    ----------
    train, test : torch.utils.data.Dataset
        Items are ``(image, label)``: float32 ``input_shape`` tensor, int64 label.
    num_classes : int
        Number of label values, ``0 .. num_classes - 1``.
    input_shape : tuple of int
        ``(C, H, W)`` of one image as delivered.
    name : str
        The dataset name it was loaded by.
    """

    train: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, int, int]
    name: str


class _Splits(NamedTuple):
    """Train and test arrays: float32 images in [0, 1] (N, C, H, W), int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    input_shape: tuple[int, int, int] | None = None,
) -> DatasetPair:
    """Load a named dataset as train and test datasets shaped for a model.

    Parameters
    ----------
    name : str
        One of :data:`DATASET_NAMES`:

        - ``"digits"``: scikit-learn's built-in 8×8 digits (1797 images), split
          1347/450 by ``train_test_split(test_size=0.25, random_state=0,
          stratify=y)``; pixels 0..16 are scaled to [0, 1]. ``root`` is ignored.
        - ``"fashion-mnist"``: the 60000/10000 set from Debian's
          ``dataset-fashion-mnist`` package, read from :data:`FASHION_MNIST_ROOT`
          unless ``root`` is given.
        - ``"mnist"``: the four MNIST IDX files in ``root``.
        - ``"cifar10"``: the CIFAR-10 python batches in ``root`` (or in
          ``root/cifar-10-batches-py``), read by :func:`read_cifar10_batch`.
        - ``"imagefolder"``: ``root/train`` and ``root/val`` in torchvision's
          ImageFolder layout; needs torchvision.
    root : str or os.PathLike, optional
        Folder holding the dataset files. Required for ``mnist``, ``cifar10``
        and ``imagefolder``.
    input_shape : tuple of int, optional
        ``(C, H, W)`` the model expects. Images are resized to ``(H, W)``
        (bilinear, ``align_corners=False``) before normalization; ``C`` must match
        the dataset's channels. Default: the dataset's own shape, and
        ``(3, 224, 224)`` for ``imagefolder``.

    Returns
    -------
    DatasetPair
        In-memory sets are ``TensorDataset`` of float32 ``(N, C, H, W)`` images
        normalized per channel with the train split's mean and standard
        deviation (population), and int64 labels.

    Raises
    ------
    ValueError
        Unknown ``name``; malformed ``input_shape`` or a channel count that does
        not match the dataset; ``root`` missing where required.
    DatasetNotFoundError
        The dataset's files are not in the folder looked at.
    DataFileError
        A file is corrupt, truncated, or inconsistent with its partner; a
        CIFAR-10 batch names a global other than numpy's array reconstruction,
        or pickles an array that is not plain numbers.
        For ``imagefolder`` an image is only read when its item is fetched.
    MissingDependencyError
        ``imagefolder`` without torchvision installed.

    Examples
    --------
    >>> pair = load_dataset("digits", input_shape=(1, 32, 32))
    >>> len(pair.train), len(pair.test), pair.num_classes, pair.input_shape
    (1347, 450, 10, (1, 32, 32))
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")
    shape = _check_input_shape(input_shape)
    folder = None if root is None else Path(root)
    if name == "imagefolder":
        return _load_imagefolder(folder, shape)
    return _build_pair(name, _ARRAY_LOADERS[name](folder), shape)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (MNIST format), gzipped or plain.

    Gzip is detected by its magic bytes ``1f 8b``, not by the file name.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    numpy.ndarray
        The array with the shape and element type the header declares, in
        native byte order (uint8 for MNIST images and labels).

    Raises
    ------
    DataFileError
        Corrupt gzip stream, bad magic number, unknown type code, no
        dimensions or more than numpy supports, or a payload whose length
        differs from what the header declares (truncated or trailing bytes).

    Examples
    --------
    >>> import tempfile, struct
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "x-idx1-ubyte"
    ...     _ = p.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 3) + bytes([7, 8, 9]))
    ...     read_idx(p)
    array([7, 8, 9], dtype=uint8)
    """
    path = Path(path)
    data = _decompress(path, path.read_bytes())
    if len(data) < 4:
        raise DataFileError(f"IDX file {path} truncated: {len(data)} byte(s), less than the 4-byte magic number")
    if data[:2] != b"\0\0":
        raise DataFileError(
            f"IDX file {path} has bad magic number 0x{data[:4].hex()}: expected it to start with 0x0000"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02x} ({d.name})" for c, d in _IDX_DTYPES.items())
        raise DataFileError(f"IDX file {path} has unknown type code 0x{code:02x}; known: {known}")
    if ndim == 0:
        raise DataFileError(f"IDX file {path} declares 0 dimensions; expected at least 1")
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise DataFileError(
            f"IDX file {path} truncated: a {ndim}-d header needs {header_bytes} bytes, found {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_bytes])
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header_bytes
    if found != expected:
        problem = "truncated" if found < expected else f"has {found - expected} trailing byte(s)"
        raise DataFileError(
            f"IDX file {path} {problem}: header declares {'×'.join(map(str, dims))} {dtype.name} "
            f"values = {expected} bytes, found {found}"
        )
    payload = np.frombuffer(memoryview(data)[header_bytes:], dtype=dtype)
    try:
        array = payload.reshape(dims)
    # More dimensions than numpy supports, or a 0 next to sizes whose product overflows.
    except ValueError as exc:
        raise DataFileError(
            f"IDX file {path} declares a {'×'.join(map(str, dims))} array, which numpy cannot hold: {exc}"
        ) from exc
    return array.astype(dtype.newbyteorder("="))


def read_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch (``data_batch_1`` .. ``_5``, ``test_batch``).

    A batch is a pickled dict with ``b"data"`` (N×3072 uint8, channel-major
    32×32 RGB) and ``b"labels"`` (N ints in 0..9), read as
    ``pickle.load(..., encoding="bytes")`` would, but safely: a file may name
    only ``numpy.ndarray``, ``numpy.dtype`` and numpy's array reconstruction
    functions, and any other global (``os.system``, ``builtins.exec``, ...) is
    refused without being looked up. Even those are not called while
    unpickling: they stand in as recorded data, and the arrays are built
    afterwards from their checked shape, plain number type and bytes. So
    reading a crafted batch runs no code from it.

    Parameters
    ----------
    path : str or os.PathLike
        The batch file.

    Returns
    -------
    images : numpy.ndarray
        uint8, shape ``(N, 3, 32, 32)``.
    labels : numpy.ndarray
        int64, shape ``(N,)``.

    Raises
    ------
    DataFileError
        The file names a global other than those, does not unpickle, is not a
        dict with those keys, pickles an array inconsistently or of a type
        other than plain numbers, or holds arrays of the wrong shape, type or
        label range.
    """
    path = Path(path)
    with path.open("rb") as stream:
        try:
            batch = _Cifar10Unpickler(path, stream).load()
        except DataFileError:
            raise
        # A corrupt pickle can raise nearly anything (UnpicklingError, EOFError,
        # AttributeError, ImportError, IndexError, MemoryError, ... per the pickle docs).
        except Exception as exc:
            raise DataFileError(f"CIFAR-10 batch {path} is not a readable pickle: {_one_line(exc)}") from exc
    if not isinstance(batch, dict):
        raise DataFileError(f"CIFAR-10 batch {path} must hold a dict, got {_type_name(batch)}")
    missing = [repr(k) for k in (b"data", b"labels") if k not in batch]
    if missing:
        found = ", ".join(sorted(_QUOTE.repr(k) for k in batch)) or "none"
        raise DataFileError(f"CIFAR-10 batch {path} lacks key(s) {', '.join(missing)}; found keys: {found}")
    data = _numpy_array(path, "b'data'", batch[b"data"])
    row = math.prod(_CIFAR10_SHAPE)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == row):
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else _type_name(data)
        raise DataFileError(f"CIFAR-10 batch {path}: b'data' must be an N×{row} uint8 array, got {got}")
    labels = _cifar10_labels(path, _numpy_array(path, "b'labels'", batch[b"labels"]), len(data))
    _check_label_range(path, labels)
    return data.reshape(-1, *_CIFAR10_SHAPE), labels.astype(np.int64)


class _NumpyStandIn:
    """What an allowed numpy global, or a call of one, unpickles to in a CIFAR-10 batch: plain data.

    numpy's own unpickling is unsafe on crafted input even with only these globals: BUILD on a
    memoized structured dtype can give it an object field after an array of the file's bytes was
    made with it, and numpy then follows those bytes as object pointers (it crashes freeing them).
    So nothing of numpy runs while unpickling; :func:`_numpy_array` checks the parts afterwards.
    """

    __slots__ = ("kind", "args", "state")

    def __init__(self, kind: str, args: tuple | None = None) -> None:
        self.kind, self.args, self.state = kind, args, None

    def __call__(self, *args: object) -> _NumpyStandIn:
        return _NumpyStandIn(self.kind, args)

    def __setstate__(self, state: object) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<pickled numpy {self.kind}>"


class _Cifar10Unpickler(pickle.Unpickler):
    """Unpickler of a CIFAR-10 batch: bytes for Python 2 strings, stand-ins for numpy, no other globals."""

    def __init__(self, path: Path, stream: BinaryIO) -> None:
        super().__init__(stream, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> _NumpyStandIn:
        """A fresh stand-in for an allowed global; DataFileError for any other, which is never imported."""
        kind = _CIFAR10_GLOBALS.get((module, name))
        if kind is None:
            allowed = ", ".join(sorted({f"{m}.{n}" for m, n in _CIFAR10_GLOBALS}))
            raise DataFileError(
                f"CIFAR-10 batch {self.path} refers to {_QUOTE.repr(f'{module}.{name}')}, which a batch never "
                f"needs and could run code: refusing to unpickle it (a batch may name only {allowed})"
            )
        return _NumpyStandIn(kind)


def _numpy_array(path: Path, key: str, value: object) -> object:
    """The array a pickled-ndarray stand-in describes, after checking each part; other values as they are."""
    if not isinstance(value, _NumpyStandIn):
        return value
    where = f"CIFAR-10 batch {path}: {key}"
    state = value.state
    # ndarray.__reduce__: _reconstruct(ndarray, (0,), b"b"), then BUILD with
    # (version, shape, dtype, is_fortran, bytes); protocol 5: _frombuffer(bytes, dtype, shape, order).
    if value.kind == "reconstruct" and value.args is not None and isinstance(state, tuple) and len(state) == 5:
        _, shape, dtype, fortran, raw = state
        order = "F" if fortran is True else "C" if fortran is False else None
    elif value.kind == "frombuffer" and value.args is not None and len(value.args) == 4 and state is None:
        raw, dtype, shape, order = value.args
    else:
        raise DataFileError(f"{where} is a pickled numpy {value.kind} that does not describe an array")
    dtype = _numpy_dtype(where, dtype)
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise DataFileError(f"{where}: array shape must be a tuple of sizes, got {_QUOTE.repr(shape)}")
    if order not in ("C", "F") or not isinstance(raw, (bytes, bytearray)):
        raise DataFileError(
            f"{where}: array must hold C- or F-ordered bytes, got {_type_name(raw)} in order {_QUOTE.repr(order)}"
        )
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise DataFileError(
            f"{where}: a {'×'.join(map(str, shape))} {dtype.name} array needs {expected} bytes, found {len(raw)}"
        )
    try:
        return np.frombuffer(raw, dtype).reshape(shape, order=order).copy()
    # More dimensions than numpy supports, or a 0 next to sizes whose product overflows.
    except ValueError as exc:
        raise DataFileError(f"{where}: numpy cannot hold a {'×'.join(map(str, shape))} array: {exc}") from exc


def _numpy_dtype(where: str, value: object) -> np.dtype:
    """The plain number type (bool, int, uint, float, complex) a pickled-dtype stand-in describes."""
    # dtype.__reduce__ of a plain type: dtype(code, align, copy), then BUILD with
    # (3, byte order, None, None, None, -1, -1, 0); Python 2's strings arrive as bytes.
    if not (isinstance(value, _NumpyStandIn) and value.kind == "dtype" and value.args
            and isinstance(value.state, tuple) and len(value.state) == 8):
        raise DataFileError(f"{where}: array type must be a pickled numpy dtype, got {_type_name(value)}")
    code, byte_order = (v.decode("latin-1") if isinstance(v, bytes) else v for v in (value.args[0], value.state[1]))
    plain = isinstance(code, str) and re.fullmatch("[biufc][0-9]{1,2}", code) is not None
    if not (plain and byte_order in ("<", ">", "|", "=") and value.state[2:5] == (None, None, None)):
        raise DataFileError(
            f"{where}: array type must be a plain number type such as 'u1', got {_QUOTE.repr(code)} "
            f"with byte order {_QUOTE.repr(byte_order)} and fields {_QUOTE.repr(value.state[2:5])}"
        )
    try:
        return np.dtype(code).newbyteorder(byte_order)
    except TypeError:
        raise DataFileError(f"{where}: {code!r} is not a numpy number type") from None


def _type_name(value: object) -> str:
    """The type of an unpickled value as a message says it."""
    return f"pickled numpy {value.kind}" if isinstance(value, _NumpyStandIn) else type(value).__name__


def _cifar10_labels(path: Path, raw: object, rows: int) -> np.ndarray:
    """``raw`` as an integer array of ``rows`` labels, or DataFileError naming the file and key."""
    try:
        labels = np.asarray(raw)
    # Ragged or self-containing lists: numpy cannot make them one array.
    except ValueError:
        labels = None
    # An empty list becomes a float64 array, and is a valid empty batch's labels.
    if labels is None or labels.shape != (rows,) or (rows and labels.dtype.kind not in "iu"):
        got = "a ragged sequence" if labels is None else f"{labels.dtype} array of shape {labels.shape}"
        raise DataFileError(
            f"CIFAR-10 batch {path}: b'labels' must be {rows} integers (one per image), got {got}"
        )
    return labels


def _one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception from a parser, on one line."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _check_input_shape(input_shape) -> tuple[int, int, int] | None:
    """Validate ``input_shape`` as three positive ints, or pass None through."""
    if input_shape is None:
        return None
    if not isinstance(input_shape, (tuple, list)):
        raise TypeError(f"input_shape must be a (C, H, W) tuple of ints, got {type(input_shape).__name__}")
    if len(input_shape) != 3 or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in input_shape
    ):
        raise ValueError(f"input_shape must be three positive ints (C, H, W), got {tuple(input_shape)!r}")
    return tuple(int(d) for d in input_shape)


def _require_root(name: str, root: Path | None, holds: str) -> Path:
    """Return ``root`` as an existing folder, or explain what to pass."""
    if root is None:
        raise ValueError(f"dataset {name!r} has no default location; pass root= (--data-root) to a folder with {holds}")
    if not root.is_dir():
        raise DatasetNotFoundError(f"dataset {name!r}: root {root} is not a directory (expected {holds})")
    return root


def _decompress(path: Path, raw: bytes) -> bytes:
    """Gunzip ``raw`` when it starts with the gzip magic bytes."""
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFileError(f"{path} is a corrupt gzip stream: {exc}") from exc


def _check_label_range(path: Path, labels: np.ndarray) -> None:
    """Reject labels outside ``0 .. _NUM_CLASSES - 1``."""
    if labels.size and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
        raise DataFileError(
            f"{path}: labels must lie in 0..{_NUM_CLASSES - 1}, found {labels.min()}..{labels.max()}"
        )


def _to_unit(images: np.ndarray, max_value: float) -> np.ndarray:
    """Scale integer pixels to float32 in [0, 1]."""
    scaled = images.astype(np.float32)
    scaled /= max_value
    return scaled


def _load_digits(root: Path | None) -> _Splits:
    """scikit-learn's 8×8 digits with the fixed stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = _to_unit(digits.images[:, None], 16.0)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, random_state=0, stratify=labels
    )
    return _Splits(x_train, y_train, x_test, y_test)


def _load_fashion_mnist(root: Path | None) -> _Splits:
    """Fashion-MNIST IDX files from ``root`` or the Debian package's folder."""
    return _load_idx_folder("fashion-mnist", FASHION_MNIST_ROOT if root is None else root, _FASHION_MNIST_HINT)


def _load_mnist(root: Path | None) -> _Splits:
    """MNIST IDX files from ``root``."""
    return _load_idx_folder("mnist", _require_root("mnist", root, "the four MNIST IDX files"), None)


def _load_idx_folder(name: str, folder: Path, hint: str | None) -> _Splits:
    """Find the four IDX files (plain preferred over .gz) and read both splits."""
    found, missing = {}, []
    for base in (*_IDX_TRAIN, *_IDX_TEST):
        path = next((p for p in (folder / base, folder / f"{base}.gz") if p.is_file()), None)
        if path is None:
            missing.append(f"{base}[.gz]")
        found[base] = path
    if missing:
        message = f"dataset {name!r}: {folder} lacks {', '.join(missing)}"
        raise DatasetNotFoundError(message + (f"; {hint}" if hint else ""))
    x_train, y_train = _read_idx_split(*(found[b] for b in _IDX_TRAIN))
    x_test, y_test = _read_idx_split(*(found[b] for b in _IDX_TEST))
    if x_test.shape[2:] != x_train.shape[2:]:
        raise DataFileError(
            f"{found[_IDX_TEST[0]]} holds {x_test.shape[2:]} images but "
            f"{found[_IDX_TRAIN[0]]} holds {x_train.shape[2:]} images; both splits must share one size"
        )
    return _Splits(x_train, y_train, x_test, y_test)


def _read_idx_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check one split: float32 (N, 1, H, W) in [0, 1], int64 labels."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataFileError(
            f"{images_path}: expected uint8 images N×H×W, got {images.dtype} of shape {images.shape}"
        )
    if 0 in images.shape[1:]:
        raise DataFileError(
            f"{images_path}: images must be at least 1×1 pixels, got {images.shape[1]}×{images.shape[2]}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataFileError(f"{labels_path}: expected integer labels N, got {labels.dtype} of shape {labels.shape}")
    if len(images) != len(labels):
        raise DataFileError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    _check_label_range(labels_path, labels)
    return _to_unit(images[:, None], 255.0), labels.astype(np.int64)


def _load_cifar10(root: Path | None) -> _Splits:
    """CIFAR-10 python batches from ``root`` or ``root/cifar-10-batches-py``."""
    folder = _require_root("cifar10", root, "the CIFAR-10 python batches")
    nested = folder / "cifar-10-batches-py"
    if not (folder / _CIFAR10_TEST_FILE).is_file() and nested.is_dir():
        folder = nested
    names = (*_CIFAR10_TRAIN_FILES, _CIFAR10_TEST_FILE)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetNotFoundError(f"dataset 'cifar10': {folder} lacks {', '.join(missing)}")
    train = [read_cifar10_batch(folder / n) for n in _CIFAR10_TRAIN_FILES]
    x_test, y_test = read_cifar10_batch(folder / _CIFAR10_TEST_FILE)
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return _Splits(_to_unit(x_train, 255.0), y_train, _to_unit(x_test, 255.0), y_test)


_ARRAY_LOADERS = {
    "digits": _load_digits,
    "fashion-mnist": _load_fashion_mnist,
    "mnist": _load_mnist,
    "cifar10": _load_cifar10,
}


def _build_pair(name: str, splits: _Splits, input_shape: tuple[int, int, int] | None) -> DatasetPair:
    """Resize to ``input_shape``, normalize with train statistics, wrap as TensorDatasets."""
    x_train = torch.from_numpy(splits.x_train)
    x_test = torch.from_numpy(splits.x_test)
    if len(x_train) == 0:
        raise ValueError(f"dataset {name!r} has an empty train split; cannot compute normalization statistics")
    if len(x_test) == 0:
        raise ValueError(f"dataset {name!r} has an empty test split; cannot measure accuracy on it")
    natural = tuple(x_train.shape[1:])
    shape = natural if input_shape is None else input_shape
    if shape[0] != natural[0]:
        raise ValueError(
            f"dataset {name!r} has {natural[0]} channel(s) per image but input_shape={shape} asks for "
            f"{shape[0]}; use a model with {natural[0]} input channel(s)"
        )
    if shape[1:] != natural[1:]:
        x_train = F.interpolate(x_train, size=shape[1:], mode="bilinear", align_corners=False)
        x_test = F.interpolate(x_test, size=shape[1:], mode="bilinear", align_corners=False)
    var, mean = torch.var_mean(x_train, dim=(0, 2, 3), correction=0, keepdim=True)
    # A constant channel carries no information: centre it, but do not divide by 0.
    std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
    return DatasetPair(
        train=TensorDataset(x_train.sub_(mean).div_(std), torch.from_numpy(splits.y_train)),
        test=TensorDataset(x_test.sub_(mean).div_(std), torch.from_numpy(splits.y_test)),
        num_classes=_NUM_CLASSES,
        input_shape=shape,
        name=name,
    )


def _load_imagefolder(root: Path | None, input_shape: tuple[int, int, int] | None) -> DatasetPair:
    """torchvision ImageFolder train/val sets with the usual ImageNet transforms."""
    if find_spec("torchvision") is None:
        raise MissingDependencyError(
            "dataset 'imagefolder' needs torchvision to read image folders; install it with "
            f"`pip install torchvision` (the build matching torch {torch.__version__})",
            name="torchvision",
        )
    folder = _require_root("imagefolder", root, "train/ and val/ class subfolders")
    missing = [s for s in ("train", "val") if not (folder / s).is_dir()]
    if missing:
        raise DatasetNotFoundError(
            f"dataset 'imagefolder': {folder} lacks {', '.join(missing)}/ (expected train/<class>/*.jpg and "
            "val/<class>/*.jpg)"
        )
    shape = _IMAGEFOLDER_DEFAULT_SHAPE if input_shape is None else input_shape
    if shape[0] != 3:
        raise ValueError(f"dataset 'imagefolder' yields 3-channel RGB images but input_shape={shape} asks for {shape[0]}")
    from torchvision import datasets, transforms

    size = shape[1:]
    normalize = transforms.Normalize(_IMAGENET_MEAN, _IMAGENET_STD)
    train = datasets.ImageFolder(
        folder / "train",
        transforms.Compose(
            [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]
        ),
        loader=_read_rgb_image,
    )
    val = datasets.ImageFolder(
        folder / "val",
        transforms.Compose(
            [
                transforms.Resize(int(max(size) * 256 / 224)),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                normalize,
            ]
        ),
        loader=_read_rgb_image,
    )
    if train.classes != val.classes:
        raise DataFileError(
            f"dataset 'imagefolder': {folder / 'train'} has classes {train.classes} but "
            f"{folder / 'val'} has {val.classes}; both must list the same class folders"
        )
    return DatasetPair(train=train, test=val, num_classes=len(train.classes), input_shape=shape, name="imagefolder")


def _read_rgb_image(path: str):
    """torchvision's default PIL loader, with a damaged file reported as DataFileError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    # Pillow's decoders raise many types for damaged files: fuzzing truncated and corrupted PNG,
    # JPEG, GIF, BMP, TIFF, WebP and ICO files gave OSError, ValueError, TypeError, SyntaxError
    # and DecompressionBombError (for a header claiming a huge image).
    except Exception as exc:
        raise DataFileError(f"image {path} is not a readable image: {_one_line(exc)}") from exc
