"""jinit.data: the IDX parser and folder loader on files the tests write, the cache, names/errors,
digits, MNIST-1D. (tfds: test_data_tfds.py; the real MNIST: test_data_mnist.py.)"""

from __future__ import annotations

import gzip
import os
import random
import warnings

import numpy as np
import pytest

from jinit import cli, data

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D}


def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file written by hand: magic (0, 0, type, ndim), big-endian dims, big-endian data."""
    arr = np.asarray(arr)
    header = bytes([0, 0, IDX_CODES[arr.dtype], arr.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path, arr, gz: bool = False):
    raw = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def make_arrays(n_train=30, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def make_idx_folder(folder, arrays, gz=("x_train", "y_test")):
    """The four files; some gzipped and some plain, as both occur in the wild."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        write_idx(folder / IDX_NAMES[key], arr, gz=key in gz)
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("JINIT_CACHE_DIR", str(path))
    monkeypatch.delenv("JINIT_DATA_DIR", raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no-tfds"))
    return path


# ------------------------------------------------------------------------------------------
# read_idx


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "arr",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([7, 0, 9], dtype=np.uint8),
        np.array([[-5, 70000], [1, 2]], dtype=np.int32),
        np.array([0.5, -1.25], dtype=np.float32),
    ],
)
def test_read_idx_round_trip(tmp_path, arr, gz):
    path = write_idx(tmp_path / "f-idx", arr, gz=gz)
    out = data.read_idx(path)
    assert out.dtype == arr.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_read_idx_magic_numbers(tmp_path):
    images = write_idx(tmp_path / "images", np.zeros((2, 28, 28), np.uint8))
    labels = write_idx(tmp_path / "labels", np.zeros(2, np.uint8))
    assert data.read_idx(images, expected_magic=2051).shape == (2, 28, 28)
    assert data.read_idx(labels, expected_magic=2049).shape == (2,)
    with pytest.raises(ValueError, match=r"labels.*magic number 2049 where 2051"):
        data.read_idx(labels, expected_magic=2051)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x00\x08", "too short"),
        (b"PK\x03\x04" + bytes(20), "not an IDX file"),
        (b"\x00\x00\x07\x01" + bytes(8), "not an IDX file"),  # unknown type code
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    ],
)
def test_read_idx_rejects_garbage(tmp_path, content, message):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as e:
        data.read_idx(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_rejects_truncated_and_overlong_bodies(tmp_path, gz):
    raw = idx_bytes(np.ones((5, 28, 28), np.uint8))
    for name, content, message in [
        ("short", raw[:-1], "truncated"),
        ("long", raw + b"\x00", "trailing bytes"),
    ]:
        path = tmp_path / f"{name}-idx3-ubyte"
        path.write_bytes(gzip.compress(content) if gz else content)
        with pytest.raises(ValueError, match=message) as e:
            data.read_idx(path)
        assert str(path) in str(e.value) and "(5, 28, 28)" in str(e.value)


def test_read_idx_rejects_a_cut_gzip_stream(tmp_path):
    packed = gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32)))
    path = tmp_path / "cut-idx1-ubyte.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match="gzip") as e:
        data.read_idx(path)
    assert str(path) in str(e.value)


# ------------------------------------------------------------------------------------------
# IDX folders


def test_load_idx_folder(tmp_path, cache):
    arrays = make_arrays()
    folder = make_idx_folder(tmp_path / "idx", arrays)
    ds = data.load("mnist", data_dir=folder)
    assert ds.name == "mnist" and ds.num_classes == 10
    assert ds.source == f"idx:{folder.resolve()}" and not ds.from_cache
    assert ds.input_shape == (28, 28, 1)
    assert ds.x_train.shape == (30, 28, 28, 1) and ds.x_test.shape == (10, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    np.testing.assert_array_equal(ds.x_train[..., 0], arrays["x_train"] / np.float32(255))
    np.testing.assert_array_equal(ds.x_test[..., 0], arrays["x_test"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert ds.num_train == 30 and ds.num_test == 10
    with pytest.raises(ValueError):  # read-only
        ds.x_train[0, 0, 0, 0] = 1.0

    flat = data.load("fashion-mnist", data_dir=folder, source="idx", flatten=True)
    assert flat.name == "fashion_mnist"
    assert flat.x_train.shape == (30, 784) and flat.input_shape == (784,)
    np.testing.assert_array_equal(flat.x_train, ds.x_train.reshape(30, -1))

    sub = data.load("mnist", data_dir=folder, num_train=7, num_test=3)
    np.testing.assert_array_equal(sub.x_train, ds.x_train[:7])
    np.testing.assert_array_equal(sub.y_test, ds.y_test[:3])
    with pytest.raises(ValueError, match="num_train=31 but mnist has only 30"):
        data.load("mnist", data_dir=folder, num_train=31)


def test_load_finds_the_dataset_subfolder_and_the_environment_variable(
    tmp_path, cache, monkeypatch
):
    arrays = make_arrays(n_train=4, n_test=2)
    make_idx_folder(tmp_path / "root" / "mnist", arrays)
    other = make_arrays(n_train=6, n_test=2, seed=1)
    make_idx_folder(tmp_path / "root" / "fashion_mnist", other)
    ds = data.load("mnist", data_dir=tmp_path / "root")
    assert ds.source == f"idx:{(tmp_path / 'root' / 'mnist').resolve()}"
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
    monkeypatch.setenv("JINIT_DATA_DIR", str(tmp_path / "root"))
    fashion = data.load("fashion_mnist")
    np.testing.assert_array_equal(fashion.y_train, other["y_train"])


def test_load_rejects_count_mismatch(tmp_path, cache):
    arrays = make_arrays()
    arrays["y_test"] = arrays["y_test"][:9]
    folder = make_idx_folder(tmp_path / "idx", arrays)
    with pytest.raises(
        ValueError, match="has 10 images but .*t10k-labels-idx1-ubyte.gz has 9 labels"
    ):
        data.load("mnist", data_dir=folder)


def test_load_rejects_bad_folders(tmp_path, cache):
    arrays = make_arrays()
    folder = make_idx_folder(tmp_path / "idx", arrays)
    # a truncated file is an error naming it, never a silently short dataset (nor tfds instead)
    path = folder / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte: truncated"):
        data.load("mnist", data_dir=folder)
    # images and labels swapped: the magic numbers catch it
    write_idx(path, arrays["x_train"])
    with pytest.raises(ValueError, match="magic number 2051 where 2049 was expected"):
        data.load("mnist", data_dir=folder)
    # one of the four files missing
    path.unlink()
    with pytest.raises(FileNotFoundError, match="lacks train-labels-idx1-ubyte"):
        data.load("mnist", data_dir=folder)
    # wrong image size for the dataset, and labels out of range
    arrays2 = make_arrays()
    arrays2["x_test"] = np.zeros((10, 32, 32), np.uint8)
    with pytest.raises(ValueError, match="32x32 pixels, mnist has 28x28"):
        data.load("mnist", data_dir=make_idx_folder(tmp_path / "idx2", arrays2))
    arrays3 = make_arrays()
    arrays3["y_train"][3] = 10
    with pytest.raises(ValueError, match="label 10 out of range"):
        data.load("mnist", data_dir=make_idx_folder(tmp_path / "idx3", arrays3))


def test_mnist_and_fashion_mnist_folders_are_not_mixed_up(tmp_path, cache):
    # identical headers; the training-label counts (Fashion-MNIST: 6000 each) tell them apart
    arrays = make_arrays(n_train=60000, n_test=2)
    arrays["x_train"] = np.zeros((60000, 28, 28), np.uint8)
    arrays["y_train"] = np.repeat(np.arange(10, dtype=np.uint8), 6000)
    folder = make_idx_folder(tmp_path / "fashion", arrays, gz=())
    with pytest.raises(ValueError, match="holds fashion_mnist"):
        data.load("mnist", data_dir=folder, cache=False)
    ds = data.load("fashion_mnist", data_dir=folder, cache=False)
    assert ds.num_train == 60000


def test_nothing_found_is_one_clear_error(tmp_path, cache):
    with pytest.raises(FileNotFoundError) as e:
        data.load("mnist")
    msg = str(e.value)
    assert "(1) local IDX files: no data_dir given and JINIT_DATA_DIR is not set" in msg
    assert "(2) tensorflow-datasets: no prepared copy of mnist" in msg
    assert str(tmp_path / "no-tfds") in msg  # TFDS_DATA_DIR is honoured
    assert "--data-dir" in msg and "train-images-idx3-ubyte.gz" in msg and "digits" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="none in .*empty"):
        data.load("fashion_mnist", data_dir=tmp_path / "empty", source="idx")
    with pytest.raises(FileNotFoundError, match="tfds build cifar10") as e:
        data.load("cifar10")
    assert "--data-dir" not in str(e.value)  # CIFAR-10 has no IDX files to point at


def test_names_and_bad_arguments(cache):
    assert data.names() == ("mnist", "fashion_mnist", "cifar10", "digits", "mnist1d")
    with pytest.raises(
        ValueError,
        match=r"unknown dataset 'mnsit'; did you mean 'mnist'.*valid names: mnist, fashion_mnist",
    ):
        data.load("mnsit")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; valid names"):
        data.load("imagenet")
    with pytest.raises(TypeError, match="must be a string"):
        data.load(3)
    with pytest.raises(ValueError, match="unknown source 'web'; valid sources: auto, idx, tfds"):
        data.load("mnist", source="web")
    with pytest.raises(ValueError, match="'digits' cannot be loaded from source 'idx'"):
        data.load("digits", source="idx")
    with pytest.raises(ValueError, match="'cifar10' cannot be loaded from source 'idx'"):
        data.load("cifar10", source="idx")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="num_test must be a positive integer"):
            data.load("digits", num_test=bad)


# ------------------------------------------------------------------------------------------
# cache


def entries(cache_path):
    return sorted(p.name for p in cache_path.iterdir() if p.is_dir()) if cache_path.exists() else []


def test_cache_hit_and_invalidation(tmp_path, cache):
    arrays = make_arrays()
    folder = make_idx_folder(tmp_path / "idx", arrays)
    first = data.load("mnist", data_dir=folder)
    assert not first.from_cache and len(entries(cache)) == 1
    second = data.load("mnist", data_dir=folder)
    assert second.from_cache and second.source == first.source  # the original source is kept
    for k in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(first, k), getattr(second, k)
        assert a.dtype == b.dtype and type(b) is np.ndarray
        np.testing.assert_array_equal(a, b)
    assert data.load("mnist", data_dir=folder, flatten=True).x_train.shape == (30, 784)

    # a changed file (new contents, new size and time) is never served stale
    new_labels = (arrays["y_train"][:30] + 1) % 10
    path = write_idx(folder / IDX_NAMES["y_train"], new_labels)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = data.load("mnist", data_dir=folder)
    assert not third.from_cache
    np.testing.assert_array_equal(third.y_train, new_labels)
    assert len(entries(cache)) == 1  # the stale entry of this folder was replaced
    assert data.load("mnist", data_dir=folder).from_cache

    # cache=False neither reads nor writes
    fresh = data.load("mnist", data_dir=folder, cache=False)
    assert not fresh.from_cache
    make_idx_folder(tmp_path / "other", make_arrays(seed=3))
    data.load("mnist", data_dir=tmp_path / "other", cache=False)
    assert len(entries(cache)) == 1


def test_damaged_cache_entry_is_rebuilt(tmp_path, cache):
    folder = make_idx_folder(tmp_path / "idx", make_arrays())
    first = data.load("mnist", data_dir=folder)
    (entry,) = entries(cache)
    (cache / entry / "x_train.npy").write_bytes(b"not an npy file")
    with pytest.warns(UserWarning, match="ignoring unreadable cache entry"):
        again = data.load("mnist", data_dir=folder)
    assert not again.from_cache
    np.testing.assert_array_equal(again.x_train, first.x_train)
    assert data.load("mnist", data_dir=folder).from_cache


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("JINIT_CACHE_DIR", str(tmp_path / "a"))
    assert data.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("JINIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "jinit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "jinit"


def test_unwritable_cache_only_warns(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("JINIT_CACHE_DIR", str(blocker / "cache"))
    folder = make_idx_folder(tmp_path / "idx", make_arrays())
    with pytest.warns(UserWarning, match="could not write the dataset cache"):
        ds = data.load("mnist", data_dir=folder)
    assert ds.num_train == 30


# ------------------------------------------------------------------------------------------
# digits and MNIST-1D


def test_digits(cache):
    from sklearn.datasets import load_digits

    ds = data.load("digits")
    assert ds.source == "sklearn" and not ds.from_cache
    assert ds.x_train.shape == (1437, 8, 8, 1) and ds.x_test.shape == (360, 8, 8, 1)
    assert ds.input_shape == (8, 8, 1) and ds.num_classes == 10
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    np.testing.assert_array_equal(ds.x_train * 16, np.round(ds.x_train * 16))  # 0..16 / 16
    # stratified: each class has its share of the 360 test images, within one
    ref = load_digits()
    share = np.bincount(ref.target) * 360 / len(ref.target)
    assert np.all(np.abs(np.bincount(ds.y_test) - share) <= 1)
    # together the two splits are exactly scikit-learn's 1,797 images with their labels
    ours = np.concatenate([ds.x_train, ds.x_test]).reshape(-1, 64) * 16
    ours = np.concatenate([ours, np.concatenate([ds.y_train, ds.y_test])[:, None]], axis=1)
    theirs = np.concatenate([ref.data, ref.target[:, None]], axis=1)
    np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(theirs, axis=0))
    assert len(ours) == len(theirs)
    # deterministic, and flatten
    again = data.load("digits", flatten=True, source="sklearn")
    assert again.from_cache and again.source == "sklearn"  # no scikit-learn import the second time
    np.testing.assert_array_equal(again.x_train, ds.x_train.reshape(1437, 64))
    np.testing.assert_array_equal(again.y_test, ds.y_test)


def test_mnist1d_small_sizes_are_deterministic_and_cached(cache):
    np.random.seed(123)
    random.seed(123)
    before_np, before_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    ds = data.load("mnist1d", num_train=200, num_test=50)
    # the package seeds the global generators; load leaves them as they were
    assert np.random.random() == before_np and random.random() == before_py
    assert ds.source == "mnist1d" and not ds.from_cache
    assert ds.x_train.shape == (200, 40) and ds.x_test.shape == (50, 40)
    assert ds.input_shape == (40,) and ds.x_train.dtype == np.float32
    assert set(np.unique(ds.y_train)) <= set(range(10)) and len(np.unique(ds.y_train)) == 10
    again = data.load("mnist1d", num_train=200, num_test=50, flatten=True)
    assert again.from_cache and again.x_train.shape == (200, 40)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)
    fresh = data.load("mnist1d", num_train=200, num_test=50, cache=False)
    np.testing.assert_array_equal(fresh.x_test, ds.x_test)


def test_mnist1d_default_is_the_packages_standard_split(cache):
    from mnist1d.data import get_dataset_args, make_dataset

    ds = data.load("mnist1d")
    ref = make_dataset(get_dataset_args())  # 5000 signals, 80 % train: the benchmark's split
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    np.testing.assert_allclose(ds.x_train, ref["x"].astype(np.float32))
    np.testing.assert_allclose(ds.x_test, ref["x_test"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, ref["y"])
    np.testing.assert_array_equal(ds.y_test, ref["y_test"])


# ------------------------------------------------------------------------------------------
# describe and the CLI


def test_describe(tmp_path, cache):
    arrays = make_arrays()
    ds = data.load("mnist", data_dir=make_idx_folder(tmp_path / "idx", arrays))
    d = data.describe(ds)
    assert d["train_counts"] == np.bincount(arrays["y_train"], minlength=10).tolist()
    assert d["test_counts"] == np.bincount(arrays["y_test"], minlength=10).tolist()
    x = arrays["x_train"].astype(np.float64) / 255
    assert d["mean"] == pytest.approx(x.mean(), rel=1e-6)
    assert d["std"] == pytest.approx(x.std(), rel=1e-6)
    assert (d["num_train"], d["num_test"], d["input_shape"]) == (30, 10, (28, 28, 1))


def test_cli_data(tmp_path, cache, capsys):
    arrays = make_arrays()
    folder = make_idx_folder(tmp_path / "idx", arrays)
    assert cli.main(["data", "mnist", "--data-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"source   idx:{folder.resolve()}\n" in out
    assert "train    30 x (28, 28, 1) float32, labels int32" in out
    counts = " ".join(
        f"{c}:{n}" for c, n in enumerate(np.bincount(arrays["y_train"], minlength=10))
    )
    assert f"classes  train {counts}" in out
    assert cli.main(["data", "mnist", "--data-dir", str(folder)]) == 0
    assert "(from cache)" in capsys.readouterr().out
    assert cli.main(["data", "mnist", "--data-dir", str(folder), "--no-cache"]) == 0
    assert "(from cache)" not in capsys.readouterr().out


def test_cli_data_errors_are_one_line(tmp_path, cache, capsys):
    assert cli.main(["data", "mnsit"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jinit data: error: unknown dataset 'mnsit'") and err.count("\n") == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["data", "mnist", "--data-dir", str(tmp_path), "--source", "idx"]) == 2
    err = capsys.readouterr().err
    assert "could not load 'mnist'" in err and err.count("\n") == 1


def test_non_finite_values_in_a_cache_entry_are_detected_and_the_entry_rebuilt(
    tmp_path, cache, capsys
):
    """A cached array holding NaN/inf (damaged) is named with its count and rebuilt, never used: `jinit data`
    prints finite statistics, a sweep does not diverge on it."""
    folder = make_idx_folder(tmp_path / "idx", make_arrays())
    first = data.load("mnist", data_dir=folder)
    (entry,) = entries(cache)
    x = np.load(cache / entry / "x_train.npy")
    x[0, 0, 0, 0], x[1, 2, 3, 0], x[2, 0, 0, 0] = np.nan, np.inf, -np.inf
    np.save(cache / entry / "x_train.npy", x)
    with pytest.warns(UserWarning, match="x_train of mnist .* holds 3 non-finite value"):
        again = data.load("mnist", data_dir=folder)
    assert not again.from_cache and np.isfinite(again.x_train).all()
    np.testing.assert_array_equal(again.x_train, first.x_train)
    np.save(cache / entry / "x_train.npy", x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["data", "mnist", "--data-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "(from cache)" not in out


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            lambda a: a.update(x_test=np.full_like(a["x_test"], np.nan)),
            "x_test of mnist .* holds 7840 non-finite",
        ),
        (
            lambda a: a.update(y_train=a["y_train"] + 10),
            "y_train of mnist .* label\\(s\\) outside 0..9",
        ),
        (
            lambda a: a.update(x_test=a["x_test"][:0], y_test=a["y_test"][:0]),
            "the test set of mnist .* is empty",
        ),
    ],
    ids=["nan", "labels", "empty"],
)
def test_bad_arrays_are_one_clear_error(cache, bad, message):
    arrays = {k: v.astype(np.float32) if k.startswith("x") else v for k, v in make_arrays().items()}
    arrays = {k: v[..., None] if k.startswith("x") else v for k, v in arrays.items()}
    bad(arrays)
    with pytest.raises(ValueError, match=message):
        data._finish(data._spec("mnist"), arrays, "test", False, False, None, None)


def test_a_deeply_nested_cache_meta_json_is_ignored(tmp_path, cache, capsys):
    folder = make_idx_folder(tmp_path / "idx", make_arrays())
    data.load("mnist", data_dir=folder)
    (entry,) = entries(cache)
    (cache / entry / "meta.json").write_text("[" * 200_000 + "]" * 200_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["data", "mnist", "--data-dir", str(folder)]) == 0
        (cache / entry / "meta.json").write_text("[1]")
        assert cli.main(["data", "mnist", "--data-dir", str(folder)]) == 0
    assert "(from cache)" not in capsys.readouterr().out
