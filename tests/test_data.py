"""Tests for compress.data: dataset loaders and the IDX / CIFAR-10 file readers."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from compress import data
from compress.data import (
    DATASET_NAMES,
    FASHION_MNIST_ROOT,
    DataFileError,
    DatasetNotFoundError,
    MissingDependencyError,
    load_dataset,
    read_cifar10_batch,
    read_idx,
)

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
             np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array, code=None, dims=None):
    """Encode ``array`` as IDX by hand: 0x0000, type code, ndim, big-endian dims, big-endian data."""
    dims = array.shape if dims is None else dims
    code = IDX_CODES[array.dtype] if code is None else code
    header = struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, gz=False):
    payload = idx_bytes(array)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_mnist(folder, x_train, y_train, x_test, y_test, gz=False):
    suffix = ".gz" if gz else ""
    for base, array in [("train-images-idx3-ubyte", x_train), ("train-labels-idx1-ubyte", y_train),
                        ("t10k-images-idx3-ubyte", x_test), ("t10k-labels-idx1-ubyte", y_test)]:
        write_idx(folder / (base + suffix), array, gz=gz)


def tiny_mnist(rng, n_train=12, n_test=5, hw=(6, 5)):
    return (rng.integers(0, 256, (n_train, *hw), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8),
            rng.integers(0, 256, (n_test, *hw), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8))


def write_cifar(folder, batches):
    """Write (data N×3072 uint8, labels list) pairs as data_batch_1..5 then test_batch."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, (images, labels) in zip(names, batches):
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": images, b"labels": labels}, f)


def tiny_cifar_batches(rng, per_batch=4):
    return [(rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
             [int(v) for v in rng.integers(0, 10, per_batch)]) for _ in range(6)]


def normalize_by_hand(train_u8, test_u8, scale):
    """Per-channel (x/scale - mean)/std with population std, computed in float64."""
    train = train_u8.astype(np.float64) / scale
    test = test_u8.astype(np.float64) / scale
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True)
    return (train - mean) / std, (test - mean) / std


# ---------------------------------------------------------------- dispatch, arguments


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'") as info:
        load_dataset("imagenet")
    for name in DATASET_NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("shape", [(1, 32), (0, 8, 8), (1, 8, -8), (1, 8.0, 8), (True, 8, 8)])
def test_bad_input_shape_is_value_error(shape):
    with pytest.raises(ValueError, match="input_shape must be three positive ints"):
        load_dataset("digits", input_shape=shape)


def test_input_shape_not_a_sequence_is_type_error():
    with pytest.raises(TypeError, match="input_shape"):
        load_dataset("digits", input_shape=32)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_local_datasets_need_root(name):
    with pytest.raises(ValueError, match="pass root="):
        load_dataset(name)


# ---------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_shapes_classes_and_split(digits):
    x_train, y_train = digits.train.tensors
    x_test, y_test = digits.test.tensors
    assert (digits.name, digits.num_classes, digits.input_shape) == ("digits", 10, (1, 8, 8))
    assert x_train.shape == (1347, 1, 8, 8) and x_test.shape == (450, 1, 8, 8)  # 1797 = 1347 + 450
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    # stratified: every class in both splits, in proportion (each of the 10 classes has 174..183 images)
    assert set(y_train.tolist()) == set(y_test.tolist()) == set(range(10))
    assert torch.bincount(y_test).min() >= 43 and torch.bincount(y_test).max() <= 46


def test_digits_normalized_with_train_statistics(digits):
    x_train = digits.train.tensors[0].double()
    assert x_train.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert x_train.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)


def test_digits_matches_sklearn_split_scaled_by_16(digits):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    tr, te, y_tr, y_te = train_test_split(raw.images, raw.target, test_size=0.25, random_state=0,
                                          stratify=raw.target)
    want_train, want_test = normalize_by_hand(tr[:, None], te[:, None], 16.0)
    np.testing.assert_allclose(digits.train.tensors[0].numpy(), want_train, atol=1e-5)
    np.testing.assert_allclose(digits.test.tensors[0].numpy(), want_test, atol=1e-5)
    np.testing.assert_array_equal(digits.train.tensors[1].numpy(), y_tr)
    np.testing.assert_array_equal(digits.test.tensors[1].numpy(), y_te)


def test_digits_is_deterministic(digits):
    again = load_dataset("digits")
    for a, b in [(digits.train, again.train), (digits.test, again.test)]:
        assert all(torch.equal(u, v) for u, v in zip(a.tensors, b.tensors))


def test_digits_resized_to_model_input():
    pair = load_dataset("digits", input_shape=(1, 32, 32))
    x_train = pair.train.tensors[0].double()
    assert pair.input_shape == (1, 32, 32)
    assert pair.train.tensors[0].shape == (1347, 1, 32, 32) and pair.test.tensors[0].shape == (450, 1, 32, 32)
    assert x_train.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert x_train.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)


def test_channel_mismatch_is_value_error():
    with pytest.raises(ValueError, match=r"1 channel\(s\).*asks for 3"):
        load_dataset("digits", input_shape=(3, 8, 8))


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip_uint8(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (7, 4, 3), dtype=np.uint8)
    got = read_idx(write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=gz))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, images)


def test_read_idx_detects_gzip_by_magic_not_name(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    plain_named_gz = tmp_path / "labels.gz"
    plain_named_gz.write_bytes(idx_bytes(labels))
    gz_named_plain = tmp_path / "labels"
    gz_named_plain.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(plain_named_gz), labels)
    np.testing.assert_array_equal(read_idx(gz_named_plain), labels)


def test_read_idx_hand_written_bytes(tmp_path):
    # two big-endian int32 values, 1 and -2, in a 1-d file: type code 0x0C
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFE]))
    got = read_idx(path)
    assert got.dtype == np.int32 and got.dtype.isnative
    assert got.tolist() == [1, -2]


@settings(max_examples=40, deadline=None)
@given(array=hnp.arrays(dtype=st.sampled_from(sorted(IDX_CODES, key=str)),
                        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)),
       gz=st.booleans())
def test_read_idx_round_trip_every_type(tmp_path_factory, array, gz):
    path = write_idx(tmp_path_factory.mktemp("idx") / "a", array, gz=gz)
    got = read_idx(path)
    assert got.shape == array.shape and got.dtype == array.dtype
    np.testing.assert_array_equal(got, array)


def test_read_idx_truncated_names_file_and_sizes(tmp_path):
    payload = idx_bytes(np.zeros((3, 4, 5), dtype=np.uint8))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(payload[:-7])
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte truncated: header declares 3×4×5 "
                                            r"uint8 values = 60 bytes, found 53"):
        read_idx(path)


def test_read_idx_truncated_gzip_payload(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 2, 2), dtype=np.uint8))[:-1]))
    with pytest.raises(DataFileError, match=r"t10k-images-idx3-ubyte\.gz truncated.*8 bytes, found 7"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1]))
    with pytest.raises(DataFileError, match=r"short truncated: a 3-d header needs 16 bytes, found 8"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"\0\0")
    with pytest.raises(DataFileError, match=r"long has 2 trailing byte\(s\)"):
        read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(100, dtype=np.uint8)))[:20])
    with pytest.raises(DataFileError, match="broken.gz is a corrupt gzip stream"):
        read_idx(path)


@pytest.mark.parametrize("content, message", [
    (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "bad magic number 0x01000801"),
    (bytes([0, 0, 7, 1, 0, 0, 0, 1, 5]), "unknown type code 0x07"),
    (bytes([0, 0, 8, 0, 5]), "declares 0 dimensions"),
    (bytes([0, 0]), r"truncated: 2 byte\(s\), less than the 4-byte magic number"),
])
def test_read_idx_bad_header(tmp_path, content, message):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=message) as info:
        read_idx(path)
    assert "train-labels-idx1-ubyte" in str(info.value)


# ---------------------------------------------------------------- mnist / fashion-mnist from IDX folders


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_round_trip_and_normalization(tmp_path, gz):
    x_train, y_train, x_test, y_test = tiny_mnist(np.random.default_rng(1))
    write_mnist(tmp_path, x_train, y_train, x_test, y_test, gz=gz)
    pair = load_dataset("mnist", tmp_path)
    want_train, want_test = normalize_by_hand(x_train[:, None], x_test[:, None], 255.0)
    assert (pair.num_classes, pair.input_shape, pair.name) == (10, (1, 6, 5), "mnist")
    np.testing.assert_allclose(pair.train.tensors[0].numpy(), want_train, atol=1e-5)
    np.testing.assert_allclose(pair.test.tensors[0].numpy(), want_test, atol=1e-5)
    assert pair.train.tensors[1].dtype == torch.int64
    np.testing.assert_array_equal(pair.train.tensors[1].numpy(), y_train)
    np.testing.assert_array_equal(pair.test.tensors[1].numpy(), y_test)


def test_fashion_mnist_root_override_reads_given_folder(tmp_path):
    x_train, y_train, x_test, y_test = tiny_mnist(np.random.default_rng(2), n_train=3, n_test=2)
    write_mnist(tmp_path, x_train, y_train, x_test, y_test, gz=True)
    pair = load_dataset("fashion-mnist", tmp_path)
    assert len(pair.train) == 3 and len(pair.test) == 2 and pair.name == "fashion-mnist"


def test_bilinear_resize_hand_computed(tmp_path):
    # Each 1×2 row [0, 255] upsampled to 4 columns with align_corners=False samples source
    # x = (i + 0.5)/2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamped weights give [a, .75a+.25b, .25a+.75b, b].
    # Normalization is affine, so (v - v0) / (v3 - v0) must be [0, .25, .75, 1].
    row = np.array([[[0, 255]], [[255, 0]]], dtype=np.uint8)
    write_mnist(tmp_path, row, np.array([0, 1], dtype=np.uint8), row, np.array([0, 1], dtype=np.uint8))
    pair = load_dataset("mnist", tmp_path, input_shape=(1, 3, 4))
    x = pair.train.tensors[0].double().numpy()
    assert x.shape == (2, 1, 3, 4)
    first = x[0, 0]
    np.testing.assert_allclose((first - first[:, :1]) / (first[:, 3:] - first[:, :1]),
                               np.tile([0, 0.25, 0.75, 1], (3, 1)), atol=1e-6)
    np.testing.assert_allclose(x[0] + x[1], 0, atol=1e-6)  # mirrored images around the mean


def test_mnist_count_mismatch_names_both_files(tmp_path):
    x_train, y_train, x_test, y_test = tiny_mnist(np.random.default_rng(3))
    write_mnist(tmp_path, x_train, y_train[:-1], x_test, y_test)
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte holds 12 images but .*"
                                            r"train-labels-idx1-ubyte holds 11 labels"):
        load_dataset("mnist", tmp_path)


def test_mnist_label_out_of_range(tmp_path):
    x_train, y_train, x_test, y_test = tiny_mnist(np.random.default_rng(4))
    y_test[0] = 10
    write_mnist(tmp_path, x_train, y_train, x_test, y_test)
    with pytest.raises(DataFileError, match=r"t10k-labels-idx1-ubyte: labels must lie in 0..9"):
        load_dataset("mnist", tmp_path)


def test_mnist_images_must_be_3d(tmp_path):
    x_train, y_train, x_test, y_test = tiny_mnist(np.random.default_rng(5))
    write_mnist(tmp_path, x_train.reshape(12, -1), y_train, x_test, y_test)
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte: expected uint8 images N×H×W"):
        load_dataset("mnist", tmp_path)


def test_mnist_split_image_sizes_must_agree(tmp_path):
    x_train, y_train, x_test, y_test = tiny_mnist(np.random.default_rng(6))
    write_mnist(tmp_path, x_train, y_train, x_test[:, :5, :5], y_test)
    with pytest.raises(DataFileError, match="both splits must share one size"):
        load_dataset("mnist", tmp_path)


def test_mnist_missing_files_listed(tmp_path):
    x_train, y_train, x_test, y_test = tiny_mnist(np.random.default_rng(7))
    write_mnist(tmp_path, x_train, y_train, x_test, y_test)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"lacks t10k-labels-idx1-ubyte\[\.gz\]$"):
        load_dataset("mnist", tmp_path)


def test_fashion_mnist_missing_mentions_apt_get(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as info:
        load_dataset("fashion-mnist", tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    assert "--data-root" in str(info.value) and "train-images-idx3-ubyte" in str(info.value)


@pytest.mark.skipif(not (FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian_package():
    pair = load_dataset("fashion-mnist")
    assert (len(pair.train), len(pair.test), pair.num_classes, pair.input_shape) == (60000, 10000, 10, (1, 28, 28))
    # Fashion-MNIST is balanced: 6000 train and 1000 test images per class.
    assert torch.bincount(pair.train.tensors[1]).tolist() == [6000] * 10
    assert torch.bincount(pair.test.tensors[1]).tolist() == [1000] * 10
    # Published train-set pixel statistics: mean 0.2860, std 0.3530 (on [0, 1]).
    raw = read_idx(FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz") / 255.0
    assert raw.mean() == pytest.approx(0.2860, abs=5e-5) and raw.std() == pytest.approx(0.3530, abs=5e-5)
    x_train = pair.train.tensors[0]
    assert x_train.double().mean().item() == pytest.approx(0.0, abs=1e-5)
    assert x_train.double().std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------- CIFAR-10


def test_read_cifar10_batch_exact(tmp_path):
    images = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        pickle.dump({b"data": images, b"labels": [3, 9]}, f)
    x, y = read_cifar10_batch(path)
    assert x.shape == (2, 3, 32, 32) and y.dtype == np.int64 and y.tolist() == [3, 9]
    # channel-major rows: the first 1024 values are red, row by row
    assert x[0, 0, 0, :3].tolist() == [0, 1, 2]
    assert x[0, 1, 0, 0] == 1024 % 256 and x[1, 2, 31, 31] == (2 * 3072 - 1) % 256


def test_cifar10_round_trip(tmp_path):
    batches = tiny_cifar_batches(np.random.default_rng(8))
    write_cifar(tmp_path, batches)
    pair = load_dataset("cifar10", tmp_path)
    train_u8 = np.concatenate([b[0] for b in batches[:5]]).reshape(-1, 3, 32, 32)
    test_u8 = batches[5][0].reshape(-1, 3, 32, 32)
    want_train, want_test = normalize_by_hand(train_u8, test_u8, 255.0)
    assert (len(pair.train), len(pair.test), pair.input_shape, pair.num_classes) == (20, 4, (3, 32, 32), 10)
    np.testing.assert_allclose(pair.train.tensors[0].numpy(), want_train, atol=1e-5)
    np.testing.assert_allclose(pair.test.tensors[0].numpy(), want_test, atol=1e-5)
    assert pair.train.tensors[1].tolist() == [v for b in batches[:5] for v in b[1]]
    # per-channel statistics: each of the three channels is centred and scaled separately
    x = pair.train.tensors[0].double()
    np.testing.assert_allclose(x.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(x.std(dim=(0, 2, 3), unbiased=False).numpy(), 1, atol=1e-6)


def test_cifar10_found_in_extracted_subfolder(tmp_path):
    nested = tmp_path / "cifar-10-batches-py"
    nested.mkdir()
    write_cifar(nested, tiny_cifar_batches(np.random.default_rng(9), per_batch=2))
    assert len(load_dataset("cifar10", tmp_path).train) == 10


def test_cifar10_into_one_channel_model_is_value_error(tmp_path):
    write_cifar(tmp_path, tiny_cifar_batches(np.random.default_rng(10), per_batch=1))
    with pytest.raises(ValueError, match=r"'cifar10' has 3 channel\(s\).*asks for 1"):
        load_dataset("cifar10", tmp_path, input_shape=(1, 32, 32))


def test_cifar10_corrupt_pickle_names_file(tmp_path):
    write_cifar(tmp_path, tiny_cifar_batches(np.random.default_rng(11)))
    path = tmp_path / "data_batch_3"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataFileError, match="data_batch_3 is not a readable pickle"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("content, message", [
    ([1, 2], "must hold a dict, got list"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, r"lacks key\(s\) b'labels'"),
    ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, r"N×3072 uint8 array, got uint8 array of shape \(2, 3000\)"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "N×3072 uint8 array, got float32"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "must be 2 integers"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels must lie in 0..9, found 0..10"),
])
def test_read_cifar10_batch_rejects_bad_content(tmp_path, content, message):
    path = tmp_path / "test_batch"
    with open(path, "wb") as f:
        pickle.dump(content, f)
    with pytest.raises(DataFileError, match=message) as info:
        read_cifar10_batch(path)
    assert "test_batch" in str(info.value)


def test_cifar10_missing_batches_listed(tmp_path):
    write_cifar(tmp_path, tiny_cifar_batches(np.random.default_rng(12))[:5])
    with pytest.raises(DatasetNotFoundError, match="lacks test_batch"):
        load_dataset("cifar10", tmp_path)


# ---------------------------------------------------------------- imagefolder


def make_image_folder(root):
    for split in ("train", "val"):
        (root / split / "cat").mkdir(parents=True)


def test_imagefolder_without_torchvision_is_clear_import_error(tmp_path, monkeypatch):
    make_image_folder(tmp_path)
    monkeypatch.setattr(data, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="torchvision") as info:
        load_dataset("imagefolder", tmp_path)
    assert isinstance(info.value, ImportError) and "pip install torchvision" in str(info.value)


@pytest.mark.skipif(data.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_imagefolder_in_this_environment_needs_torchvision(tmp_path):
    make_image_folder(tmp_path)
    with pytest.raises(ImportError, match="needs torchvision"):
        load_dataset("imagefolder", tmp_path)


@pytest.mark.skipif(data.find_spec("torchvision") is None, reason="torchvision is not installed here")
def test_imagefolder_with_torchvision_reads_the_train_val_layout(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("val", 2)):
        for label in ("cat", "dog"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    pair = load_dataset("imagefolder", tmp_path, input_shape=(3, 32, 32))
    assert (pair.num_classes, len(pair.train), len(pair.test)) == (2, 6, 4)
    image, label = pair.test[3]
    assert tuple(image.shape) == (3, 32, 32) and label == 1 and image.dtype == torch.float32
    # Random crops differ from call to call in training; validation is deterministic.
    assert torch.equal(pair.test[0][0], pair.test[0][0])
    assert tuple(pair.train[0][0].shape) == (3, 32, 32)
    sampler = torch.utils.data.distributed.DistributedSampler(pair.train, num_replicas=2, rank=1, shuffle=True, seed=0)
    assert len(list(sampler)) == 3
    (tmp_path / "val" / "dog").rename(tmp_path / "val" / "bird")
    with pytest.raises(DataFileError, match="same class folders"):
        load_dataset("imagefolder", tmp_path, input_shape=(3, 32, 32))
