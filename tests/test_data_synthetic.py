"""jinit.data.associative_recall: the synthetic sequence task of the transformer study (offline, seeded)."""

from __future__ import annotations

import numpy as np
import pytest

from jinit import data


def test_associative_recall_labels_are_the_value_after_the_query_key():
    ds = data.associative_recall(300, 100, vocab=20, n_pairs=5, seed=3)
    assert ds.task == "classification" and ds.num_classes == 20 and ds.name == "associative_recall"
    assert ds.x_train.shape == (300, 11) and ds.x_test.shape == (100, 11)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        tokens = x.astype(np.int64)
        assert np.array_equal(tokens, x)  # integer token ids stored as floats
        keys, values, query = tokens[:, 0:-1:2], tokens[:, 1:-1:2], tokens[:, -1]
        assert keys.max() < 10 <= values.min() and values.max() < 20
        assert all(len(set(row)) == 5 for row in keys)  # keys are distinct within a sequence
        hit = keys == query[:, None]
        assert (hit.sum(axis=1) == 1).all()  # the query is exactly one of the keys
        np.testing.assert_array_equal(y, values[hit])
        # every key position is queried, so the task cannot be solved by position alone
        assert set(np.argmax(hit, axis=1)) == set(range(5))


def test_associative_recall_is_a_pure_function_of_its_seed():
    a = data.associative_recall(50, 20, vocab=16, n_pairs=3, seed=0)
    b = data.associative_recall(50, 20, vocab=16, n_pairs=3, seed=0)
    c = data.associative_recall(50, 20, vocab=16, n_pairs=3, seed=1)
    assert a.source == b.source != c.source
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_train[:20], a.x_test)  # the test set is a fresh draw


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vocab": 15}, "vocab must be an even integer"),
        ({"vocab": 8, "n_pairs": 5}, "n_pairs=5 needs 5 distinct keys but vocab=8"),
        ({"n_train": 0}, "n_train must be an integer >= 1"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_associative_recall_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.associative_recall(**kwargs)
