"""Dataset files are untrusted input: no code runs from them, and every defect is one clean line.

The CIFAR-10 batches are pickles. ``read_cifar10_batch`` must resolve only the numpy globals the
real files need, so a crafted batch cannot run code; the fuzz tests feed random bytes, random
pickled structures and damaged real-format batches to every file reader in ``compress.data`` and
accept only a valid result or a one-line ``DataFileError`` naming the file, with nothing written.
"""

import builtins
import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress import data
from compress.cli import main
from compress.data import DataFileError, load_dataset, read_cifar10_batch, read_idx

CIFAR_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
needs_pil = pytest.mark.skipif(find_spec("PIL") is None, reason="Pillow is not installed here")
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- a batch as the real files are written


def _py2_str(raw: bytes) -> bytes:
    """A Python 2 ``str`` as cPickle writes it (SHORT_BINSTRING or BINSTRING); read back as bytes."""
    return b"U" + bytes([len(raw)]) + raw if len(raw) < 256 else b"T" + struct.pack("<I", len(raw)) + raw


def _py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def py2_batch(images, labels, numpy_module="numpy.core.multiarray"):
    """The bytes Python 2's ``cPickle.dump(batch, f, 2)`` wrote for the real CIFAR-10 batches.

    Written opcode by opcode, as in the distributed ``data_batch_1``: a dict of Python 2 strings
    (``batch_label``, ``labels``, ``data``, ``filenames``), ``data`` an N×3072 uint8 array pickled
    through ``numpy.core.multiarray._reconstruct`` / ``numpy.ndarray`` / ``numpy.dtype``, labels a list
    of ints. ``numpy_module`` is where the file says ``_reconstruct`` lives (numpy 2 writes ``numpy._core``).
    """
    rows = len(images)
    dtype = b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
    dtype += b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + _py2_int(-1) + _py2_int(-1) + _py2_int(0) + b"tb"
    array = b"c" + numpy_module.encode() + b"\n_reconstruct\ncnumpy\nndarray\n" + _py2_int(0) + b"\x85"
    array += _py2_str(b"b") + b"\x87R(" + _py2_int(1) + _py2_int(rows) + _py2_int(3072) + b"\x86" + dtype
    array += b"\x89" + _py2_str(np.ascontiguousarray(images, dtype=np.uint8).tobytes()) + b"tb"
    label_list = b"](" + b"".join(_py2_int(int(v)) for v in labels) + b"e"
    filenames = b"](" + b"".join(_py2_str(f"img_{k}.png".encode()) for k in range(rows)) + b"e"
    return (b"\x80\x02}(" + _py2_str(b"batch_label") + _py2_str(b"training batch 1 of 5")
            + _py2_str(b"labels") + label_list + _py2_str(b"data") + array
            + _py2_str(b"filenames") + filenames + b"u.")


def tiny_images(rows, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (rows, 3072), dtype=np.uint8)


def listing(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def assert_clean(exc, path):
    """One line that names the file."""
    message = str(exc)
    assert "\n" not in message and "\r" not in message
    assert str(path) in message


@pytest.mark.parametrize("numpy_module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_real_format_batch_reads_exactly(tmp_path, numpy_module):
    images = tiny_images(3)
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_batch(images, [0, 9, 4], numpy_module))
    x, y = read_cifar10_batch(path)
    assert x.dtype == np.uint8 and x.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(x.reshape(3, 3072), images)
    assert y.dtype == np.int64 and y.tolist() == [0, 9, 4]


def test_real_format_batches_load_as_a_dataset(tmp_path):
    for k, name in enumerate(CIFAR_NAMES):
        (tmp_path / name).write_bytes(py2_batch(tiny_images(2, seed=k), [k, 9 - k]))
    pair = load_dataset("cifar10", tmp_path)
    assert (len(pair.train), len(pair.test)) == (10, 2)
    assert pair.train.tensors[1].tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5]


@pytest.mark.parametrize("protocol", [3, 4, 5])
@pytest.mark.parametrize("order", ["C", "F"])
def test_python3_pickles_of_arrays_read_exactly(tmp_path, protocol, order):
    images = np.asarray(tiny_images(3), order=order)
    labels = np.array([7, 0, 9], dtype=">i8")  # big-endian labels array instead of a list
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": images, b"labels": labels}, protocol=protocol))
    x, y = read_cifar10_batch(path)
    np.testing.assert_array_equal(x.reshape(3, 3072), images)
    assert y.dtype == np.int64 and y.tolist() == [7, 0, 9]
    assert x.flags.writeable


# ---------------------------------------------------------------- crafted batches run nothing


class Payload:
    """Unpickling this calls ``func(*args)``: what an attacker's batch would do."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker):
    """Ways to create ``marker`` when unpickled, each with the global the file names."""
    return [
        (Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"),
        (Payload(os.system, f"touch '{marker}'"), f"{os.system.__module__}.system"),
        (Payload(builtins.eval, f"open({str(marker)!r}, 'w')"), "builtins.eval"),
    ]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("where", ["top", "labels", "extra key"])
def test_malicious_batch_runs_nothing_and_names_the_file(tmp_path, protocol, where):
    marker = tmp_path / "pwned"
    for k, (payload, global_name) in enumerate(payloads(marker)):
        batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}
        if where == "top":
            batch = payload
        elif where == "labels":
            batch[b"labels"] = [payload]
        else:
            batch[b"batch_label"] = payload
        path = tmp_path / f"data_batch_{k}"
        path.write_bytes(pickle.dumps(batch, protocol=protocol))
        with pytest.raises(DataFileError, match="refers to") as info:
            read_cifar10_batch(path)
        assert not marker.exists(), f"the payload ran while reading {path}"
        assert_clean(info.value, path)
        if protocol < 3:
            # Python 2 module names (builtins -> __builtin__); bytes keys are rebuilt by _codecs.encode,
            # the first global of such a dict, which a Python 2 str never needs either.
            global_name = global_name.replace("builtins.", "__builtin__.") if where == "top" else "_codecs.encode"
        assert f"refers to {global_name!r}" in str(info.value)


def test_malicious_global_in_python2_opcodes_is_refused(tmp_path):
    # GLOBAL opcode with a Python 2 module name: the unpickler's own 2->3 name mapping must not let it through.
    marker = tmp_path / "pwned"
    command = f"touch '{marker}'".encode()
    path = tmp_path / "test_batch"
    path.write_bytes(b"\x80\x02cos\nsystem\n" + _py2_str(command) + b"\x85R.")
    with pytest.raises(DataFileError, match=r"refers to 'os\.system'") as info:
        read_cifar10_batch(path)
    assert not marker.exists()
    assert_clean(info.value, path)
    path.write_bytes(b"\x80\x02c__builtin__\neval\n" + _py2_str(b"1") + b"\x85R.")
    with pytest.raises(DataFileError, match=r"refers to '__builtin__\.eval'"):
        read_cifar10_batch(path)


def test_global_name_with_newline_stays_one_line(tmp_path):
    path = tmp_path / "data_batch_1"
    # STACK_GLOBAL takes arbitrary strings, so a crafted name may hold line breaks.
    path.write_bytes(pickle.dumps(None, protocol=4)[:2] + b"\x8c\x04os\n\n\x8c\x06sys\nem\x93.")
    with pytest.raises(DataFileError, match="refers to") as info:
        read_cifar10_batch(path)
    assert_clean(info.value, path)


def dtype_rewritten_after_use():
    """A batch that gives its array's dtype an object field after the array was filled with bytes.

    Only allowed globals (numpy.dtype, ndarray, _reconstruct), but BUILD on the memoized dtype
    turns the 8 bytes 'AAAAAAAA' into an object pointer; numpy's own unpickling then crashes the
    process when it frees the array (or follows the pointer when an element is read).
    """
    def body(obj):  # protocol-2 opcodes of obj, without PROTO and STOP
        return pickle.dumps(obj, protocol=2)[2:-1]

    structured = np.dtype([("a", "u8")])
    poisoned = (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 63)
    put, get = b"r" + struct.pack("<I", 200), b"j" + struct.pack("<I", 200)
    return (b"\x80\x02}(" + _py2_str(b"data") + body(structured) + put + b"0"
            + b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _py2_int(0) + b"\x85" + _py2_str(b"b")
            + b"\x87R(" + _py2_int(1) + _py2_int(1) + b"\x85" + get + b"\x89" + _py2_str(b"A" * 8) + b"tb"
            + get + body(poisoned) + b"b0" + _py2_str(b"labels") + b"](" + _py2_int(0) + b"eu.")


def test_dtype_rewritten_after_use_is_refused_without_a_crash(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(dtype_rewritten_after_use())
    # In a child process: the failure this guards against is a segmentation fault.
    script = ("import gc, sys\nfrom compress.data import DataFileError, read_cifar10_batch\n"
              "try:\n    read_cifar10_batch(sys.argv[1])\nexcept DataFileError as exc:\n    print(exc)\n"
              "gc.collect()\nprint('survived')\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    message, survived = done.stdout.splitlines()
    assert survived == "survived"
    assert message.startswith(f"CIFAR-10 batch {path}: b'data': array type must be a plain number type")


@pytest.mark.parametrize("command", ["simulate", "train"])
def test_cli_refuses_malicious_cifar10_batch(tmp_path, capsys, command):
    marker = tmp_path / "pwned"
    root = tmp_path / "cifar"
    root.mkdir()
    for name in CIFAR_NAMES:
        (root / name).write_bytes(py2_batch(tiny_images(1), [1]))
    (root / "data_batch_1").write_bytes(pickle.dumps(Payload(os.system, f"touch '{marker}'"), protocol=2))
    out = tmp_path / "run"
    if command == "simulate":
        argv = ["simulate", "--model", "lenet5", "--profile", "eyeriss-iclr19", "--estimator", "paper",
                "--inputs-from", "cifar10", "--data-root", str(root)]
    else:
        argv = ["train", "--model", "lenet5", "--input-shape", "3,32,32", "--dataset", "cifar10",
                "--data-root", str(root), "--profile", "eyeriss-iclr19", "--budget", "0.5", "--out", str(out)]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]
    assert len(err) == 1, err
    batch = root / "data_batch_1"
    assert err[0].startswith(f"ecc {command}: error: CIFAR-10 batch {batch} refers to '{os.system.__module__}.system'")
    assert not marker.exists() and not out.exists()


# ---------------------------------------------------------------- structure after unpickling


@pytest.mark.parametrize("labels", [[[1, 2], [3]], "self", [2**70], [True], [0.5], None])
def test_malformed_labels_name_file_and_key(tmp_path, labels):
    if labels == "self":
        labels = []
        labels.append(labels)
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels}))
    with pytest.raises(DataFileError, match=r"b'labels' must be 2 integers") as info:
        read_cifar10_batch(path)
    assert_clean(info.value, path)


def test_huge_key_is_shortened_in_the_message(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"x" * 100_000: 1, "a\nb": 2}))
    with pytest.raises(DataFileError, match=r"lacks key\(s\) b'data', b'labels'") as info:
        read_cifar10_batch(path)
    assert_clean(info.value, path)
    assert len(str(info.value)) < 500


def test_empty_test_split_is_refused(tmp_path):
    for k, name in enumerate(CIFAR_NAMES[:-1]):
        (tmp_path / name).write_bytes(py2_batch(tiny_images(1, seed=k), [k]))
    (tmp_path / "test_batch").write_bytes(py2_batch(tiny_images(0), []))
    with pytest.raises(ValueError, match="'cifar10' has an empty test split"):
        load_dataset("cifar10", tmp_path)


# ---------------------------------------------------------------- IDX headers numpy cannot hold


def idx(code, dims, payload=b""):
    return struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + payload


@pytest.mark.parametrize("dims", [(1,) * 65, (1,) * 255, (0, 2**32 - 1, 2**32 - 1), (2**32 - 1, 0, 2**32 - 1, 7)])
def test_idx_header_numpy_cannot_hold_is_data_file_error(tmp_path, dims):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx(0x08, dims, b"\0" if 0 not in dims else b""))
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte") as info:
        read_idx(path)
    assert_clean(info.value, path)


def write_idx_folder(folder, x_train, y_train, x_test, y_test):
    for base, array in [("train-images-idx3-ubyte", x_train), ("train-labels-idx1-ubyte", y_train),
                        ("t10k-images-idx3-ubyte", x_test), ("t10k-labels-idx1-ubyte", y_test)]:
        (folder / base).write_bytes(idx(0x08, array.shape, array.astype(np.uint8).tobytes()))


@pytest.mark.parametrize("hw", [(0, 5), (5, 0), (0, 0)])
def test_idx_images_without_pixels_are_refused(tmp_path, hw):
    labels = np.zeros(3, np.uint8)
    write_idx_folder(tmp_path, np.zeros((3, *hw), np.uint8), labels, np.zeros((3, *hw), np.uint8), labels)
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte: .*at least 1×1") as info:
        load_dataset("mnist", tmp_path, input_shape=(1, 8, 8))
    assert_clean(info.value, tmp_path / "train-images-idx3-ubyte")


def test_idx_empty_test_split_is_refused(tmp_path):
    write_idx_folder(tmp_path, np.zeros((3, 4, 4)), np.zeros(3), np.zeros((0, 4, 4)), np.zeros(0))
    with pytest.raises(ValueError, match="'mnist' has an empty test split"):
        load_dataset("mnist", tmp_path)


# ---------------------------------------------------------------- fuzz: random bytes and structures


def check_cifar_result(path, folder, before):
    """Read ``path``: a valid batch or a clean one-line DataFileError, and nothing written either way."""
    try:
        x, y = read_cifar10_batch(path)
    except DataFileError as exc:
        assert_clean(exc, path)
    else:
        assert x.dtype == np.uint8 and x.shape[1:] == (3, 32, 32)
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert y.size == 0 or (y.min() >= 0 and y.max() <= 9)
    assert listing(folder) == before


@FUZZ
@given(raw=st.binary(max_size=400), prefix=st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"\x80\x05", b"(d"]))
def test_fuzz_cifar_random_bytes(tmp_path_factory, raw, prefix):
    folder = tmp_path_factory.mktemp("cifar")
    path = folder / "data_batch_1"
    path.write_bytes(prefix + raw)
    check_cifar_result(path, folder, listing(folder))


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8),
                    st.binary(max_size=8))
arrays = st.builds(
    lambda dtype, rows, cols, fill: np.full((rows, cols), fill % 256).astype(dtype),
    st.sampled_from([np.uint8, np.int8, np.int64, np.float32, np.bool_, object]),
    st.integers(0, 3), st.sampled_from([0, 1, 3071, 3072, 3073]), st.integers(0, 300),
)
keys = st.sampled_from([b"data", b"labels", "data", 1])
values = st.recursive(
    scalars | arrays,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)
label_values = st.one_of(st.lists(st.integers(-1, 11), max_size=4),
                         st.lists(st.lists(st.integers(0, 9), max_size=2), min_size=2, max_size=3), values)
batches = st.one_of(
    values,
    st.fixed_dictionaries({b"data": st.integers(0, 3).map(tiny_images), b"labels": label_values}),
    st.fixed_dictionaries({b"data": arrays | values, b"labels": label_values}),
)


@FUZZ
@given(batch=batches, protocol=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_fuzz_cifar_random_structures(tmp_path_factory, batch, protocol):
    folder = tmp_path_factory.mktemp("cifar")
    path = folder / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    check_cifar_result(path, folder, listing(folder))


@FUZZ
@given(rows=st.integers(0, 2), labels=st.lists(st.integers(-1, 10), min_size=0, max_size=3),
       cut=st.integers(0, 20_000), flips=st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), max_size=4))
def test_fuzz_cifar_damaged_real_format(tmp_path_factory, rows, labels, cut, flips):
    folder = tmp_path_factory.mktemp("cifar")
    raw = bytearray(py2_batch(tiny_images(rows), labels))
    for at, value in flips:
        raw[at % len(raw)] = value
    path = folder / "data_batch_2"
    path.write_bytes(bytes(raw[: len(raw) - cut % (len(raw) + 1)]))
    check_cifar_result(path, folder, listing(folder))


def check_idx_result(path, folder, before):
    try:
        array = read_idx(path)
    except DataFileError as exc:
        assert_clean(exc, path)
    else:
        assert isinstance(array, np.ndarray) and array.dtype.isnative and array.ndim >= 1
    assert listing(folder) == before


@FUZZ
@given(raw=st.binary(max_size=300), gz=st.booleans())
def test_fuzz_idx_random_bytes(tmp_path_factory, raw, gz):
    folder = tmp_path_factory.mktemp("idx")
    path = folder / "train-labels-idx1-ubyte"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    check_idx_result(path, folder, listing(folder))


@FUZZ
@given(code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]),
       dims=st.lists(st.sampled_from([0, 1, 2, 3, 2**31, 2**32 - 1]), max_size=80),
       payload=st.binary(max_size=64), gz=st.booleans())
def test_fuzz_idx_random_headers(tmp_path_factory, code, dims, payload, gz):
    folder = tmp_path_factory.mktemp("idx")
    path = folder / "t10k-images-idx3-ubyte.gz"
    raw = struct.pack(">BBBB", 0, 0, code, len(dims) % 256) + struct.pack(f">{len(dims)}I", *dims) + payload
    path.write_bytes(gzip.compress(raw) if gz else raw)
    check_idx_result(path, folder, listing(folder))


@st.composite
def idx_splits(draw):
    """Four IDX files' worth of one split: images (N, H, W) of some type code, labels mostly N of them."""
    n, h, w = draw(st.integers(0, 3)), draw(st.integers(0, 3)), draw(st.integers(0, 3))
    code = draw(st.sampled_from([0x08, 0x08, 0x08, 0x0C, 0x0D]))
    count = draw(st.one_of(st.just(n), st.integers(0, 4)))
    return n, h, w, code, count


@FUZZ
@given(splits=st.lists(idx_splits(), min_size=2, max_size=2), label_max=st.integers(0, 12),
       shape=st.one_of(st.none(), st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 5))))
def test_fuzz_mnist_folder_random_structures(tmp_path_factory, splits, label_max, shape):
    folder = tmp_path_factory.mktemp("mnist")
    bases = [("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    rng = np.random.default_rng(0)
    for (images_name, labels_name), (n, h, w, code, count) in zip(bases, splits):
        itemsize = {0x08: 1, 0x0C: 4, 0x0D: 4}[code]
        (folder / images_name).write_bytes(idx(code, (n, h, w), bytes(n * h * w * itemsize)))
        labels = rng.integers(0, label_max + 1, count, dtype=np.uint8)
        (folder / labels_name).write_bytes(idx(0x08, (count,), labels.tobytes()))
    before = listing(folder)
    try:
        pair = load_dataset("mnist", folder, input_shape=shape)
    except DataFileError as exc:
        assert "\n" not in str(exc) and f"{folder}{os.sep}" in str(exc)
    except ValueError as exc:  # a split or channel count that does not fit, not a broken file
        assert "\n" not in str(exc) and str(exc).startswith("dataset 'mnist' has ")
    else:
        for split in (pair.train, pair.test):
            x, y = split.tensors
            assert len(x) == len(y) > 0 and tuple(x.shape[1:]) == pair.input_shape and x[0].numel() > 0
            assert bool(x.isfinite().all()) and int(y.min()) >= 0 and int(y.max()) <= 9
    assert listing(folder) == before


# ---------------------------------------------------------------- image files of an image folder


def png_bytes(size=(6, 5)):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@needs_pil
def test_image_loader_reads_rgb(tmp_path):
    path = tmp_path / "cat.png"
    path.write_bytes(png_bytes())
    image = data._read_rgb_image(str(path))
    assert image.mode == "RGB" and image.size == (6, 5)


@needs_pil
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_image_loader_damaged_file_names_it(tmp_path, damage):
    path = tmp_path / "cat.png"
    raw = png_bytes()
    path.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": b"not an image", "empty": b""}[damage])
    with pytest.raises(DataFileError, match="is not a readable image") as info:
        data._read_rgb_image(str(path))
    assert_clean(info.value, path)


@needs_pil
@FUZZ
@given(raw=st.binary(max_size=300), keep=st.integers(0, 400), header=st.booleans())
def test_fuzz_image_loader(tmp_path_factory, raw, keep, header):
    folder = tmp_path_factory.mktemp("img")
    path = folder / "x.jpg"
    path.write_bytes((png_bytes()[:keep] if header else b"") + raw)
    before = listing(folder)
    try:
        image = data._read_rgb_image(str(path))
    except DataFileError as exc:
        assert_clean(exc, path)
    else:
        assert image.mode == "RGB"
    assert listing(folder) == before


@pytest.mark.skipif(find_spec("torchvision") is None, reason="torchvision is not installed here")
def test_image_folder_damaged_image_names_the_file(tmp_path):
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            (tmp_path / split / label).mkdir(parents=True)
            (tmp_path / split / label / "0.png").write_bytes(png_bytes((40, 50)))
    broken = tmp_path / "val" / "dog" / "1.png"
    broken.write_bytes(png_bytes((40, 50))[:100])
    pair = load_dataset("imagefolder", tmp_path, input_shape=(3, 32, 32))
    assert tuple(pair.test[0][0].shape) == (3, 32, 32)
    with pytest.raises(DataFileError, match="is not a readable image") as info:
        pair.test[2]
    assert_clean(info.value, broken)
