"""jinit.data on the full real MNIST (skips when ../shared/data/mnist is absent)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from jinit import data

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def loads(mnist_dir, tmp_path_factory):
    """The first load (parses the IDX files) and the second (from the cache), with their times."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JINIT_CACHE_DIR", str(tmp_path_factory.mktemp("mnist-cache")))
        t0 = time.perf_counter()
        first = data.load("mnist", data_dir=mnist_dir)
        t1 = time.perf_counter()
        second = data.load("mnist", data_dir=mnist_dir)
        t2 = time.perf_counter()
        flat = data.load("mnist", data_dir=mnist_dir, flatten=True)
    return first, second, flat, t1 - t0, t2 - t1


def test_real_mnist(loads, mnist_dir):
    ds = loads[0]
    assert ds.source == f"idx:{mnist_dir.resolve()}" and not ds.from_cache
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert np.bincount(ds.y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(ds.y_test).tolist() == TEST_COUNTS
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    d = data.describe(ds)
    # the known pixel statistics: mean 33.318 / 255 and std 0.3081
    assert d["mean"] == pytest.approx(0.130661, abs=5e-6)
    assert d["std"] == pytest.approx(0.308108, abs=5e-6)


def test_real_mnist_flattened_and_cached(loads):
    first, second, flat, t_first, t_second = loads
    assert flat.x_train.shape == (60000, 784) and flat.input_shape == (784,)
    assert second.from_cache and flat.from_cache and second.source == first.source
    for k in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(second, k), getattr(first, k))
    np.testing.assert_array_equal(flat.x_test, first.x_test.reshape(10000, 784))
    # a ratio, not a wall-clock limit (a loaded CI machine): reading the cache beats parsing the IDX files
    assert t_second < t_first, f"cached load {t_second:.2f} s, first load {t_first:.2f} s"
