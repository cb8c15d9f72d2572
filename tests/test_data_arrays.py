"""jinit.data.from_arrays (your own arrays, any task) and jinit.data.split_validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jinit import data


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JINIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def arrays(n_train=40, n_test=12, shape=(5,), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n_train, *shape)),
        rng.integers(0, classes, n_train),
        rng.normal(size=(n_test, *shape)),
        rng.integers(0, classes, n_test),
    )


def test_classification_is_inferred_from_integer_labels():
    x_tr, y_tr, x_te, y_te = arrays(shape=(4, 4, 2))
    y_te = y_te.copy()
    y_te[0] = 6  # the largest label of any split sets num_classes
    ds = data.from_arrays(x_tr, y_tr, x_te, y_te)
    assert (ds.task, ds.num_classes, ds.name) == ("classification", 7, "arrays")
    assert ds.input_shape == (4, 4, 2) and (ds.num_train, ds.num_test, ds.num_val) == (40, 12, 0)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.x_val is None and ds.y_val is None and not ds.from_cache
    np.testing.assert_array_equal(ds.x_train, x_tr.astype(np.float32))  # not rescaled
    np.testing.assert_array_equal(ds.y_test, y_te)
    for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert not arr.flags.writeable
    x_tr[0] = 99.0  # a copy: changing the caller's array does not change the dataset
    assert ds.x_train[0, 0, 0, 0] != 99.0
    d = data.describe(ds)
    assert d["task"] == "classification" and d["num_val"] == 0 and d["val_counts"] is None
    assert d["train_counts"] == np.bincount(y_tr, minlength=7).tolist()
    assert d["test_counts"][6] == 1


def test_num_classes_given_and_its_checks():
    x_tr, y_tr, x_te, y_te = arrays(classes=3)
    assert data.from_arrays(x_tr, y_tr, x_te, y_te, num_classes=10).num_classes == 10
    with pytest.raises(ValueError, match=r"y_train holds \d+ label\(s\) outside 0..1 .*2 classes"):
        data.from_arrays(x_tr, y_tr, x_te, y_te, num_classes=2)
    with pytest.raises(ValueError, match="single class"):
        data.from_arrays(x_tr, np.zeros(40, int), x_te, np.zeros(12, int))
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="num_classes must be a positive integer"):
            data.from_arrays(x_tr, y_tr, x_te, y_te, num_classes=bad)


def test_binary_only_when_asked_and_labels_as_a_column_or_floats():
    x_tr, _, x_te, _ = arrays()
    y_tr, y_te = np.arange(40) % 2 == 0, np.arange(12) % 2 == 1  # bool labels
    inferred = data.from_arrays(x_tr, y_tr, x_te, y_te)
    assert (inferred.task, inferred.num_classes) == ("classification", 2)
    ds = data.from_arrays(x_tr, y_tr[:, None].astype(float), x_te, y_te, task="binary")
    assert (ds.task, ds.num_classes, ds.y_train.shape, ds.y_train.dtype) == (
        "binary",
        2,
        (40,),
        np.int32,
    )
    np.testing.assert_array_equal(ds.y_train, y_tr.astype(np.int32))
    with pytest.raises(ValueError, match=r"y_test holds 12 label\(s\) outside 0 or 1"):
        data.from_arrays(x_tr, y_tr, x_te, np.full(12, 2), task="binary")
    with pytest.raises(ValueError, match="num_classes=3 but a binary task has 2 classes"):
        data.from_arrays(x_tr, y_tr, x_te, y_te, task="binary", num_classes=3)
    with pytest.raises(ValueError, match="non-integer values; classification labels are integers"):
        data.from_arrays(x_tr, y_tr + 0.5, x_te, y_te, task="classification")


def test_regression_on_scikit_learns_diabetes_data():
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    ds = data.from_arrays(x[:342], y[:342], x[342:], y[342:], name="diabetes")
    assert (ds.task, ds.num_classes, ds.name) == ("regression", 1, "diabetes")
    assert ds.x_train.shape == (342, 10) and ds.x_test.shape == (100, 10)
    assert ds.y_train.shape == (342,) and ds.y_test.shape == (100,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.float32
    np.testing.assert_allclose(ds.y_test, y[342:], rtol=1e-6)
    d = data.describe(ds)
    assert d["train_counts"] is None and d["test_counts"] is None
    assert d["target_mean"] == pytest.approx(y[:342].mean(), rel=1e-5)
    assert d["target_min"] == 25.0 and d["input_shape"] == (10,)

    two = np.stack([y, -y], axis=1)  # two targets per example
    ds2 = data.from_arrays(x[:342], two[:342], x[342:], two[342:])
    assert (ds2.task, ds2.num_classes, ds2.y_train.shape) == ("regression", 2, (342, 2))
    with pytest.raises(ValueError, match="num_classes=1 but y_train has 2 regression target"):
        data.from_arrays(x[:342], two[:342], x[342:], two[342:], num_classes=1)
    with pytest.raises(ValueError, match=r"y_test has targets of shape \(\) but y_train \(2,\)"):
        data.from_arrays(x[:342], two[:342], x[342:], y[342:])
    # integer targets are regression when asked
    ints = data.from_arrays(
        x[:342], y[:342].astype(int), x[342:], y[342:].astype(int), task="regression"
    )
    assert ints.task == "regression" and ints.y_train.dtype == np.float32


def test_the_source_is_a_fingerprint_of_the_content():
    x_tr, y_tr, x_te, y_te = arrays()
    a = data.from_arrays(x_tr, y_tr, x_te, y_te)
    assert a.source.startswith("arrays:sha256:") and len(a.source) == len("arrays:sha256:") + 64
    assert data.from_arrays(list(x_tr), list(y_tr), x_te, y_te, name="other").source == a.source
    changed = x_te.copy()
    changed[3, 2] += 1e-3
    assert data.from_arrays(x_tr, y_tr, changed, y_te).source != a.source
    assert data.from_arrays(x_tr, y_tr, x_te, y_te, num_classes=5).source != a.source
    swapped = data.from_arrays(x_te, y_te, x_tr, y_tr)  # same arrays, other roles
    assert swapped.source != a.source
    with_val = data.from_arrays(x_tr, y_tr, x_te, y_te, x_val=x_te[:3], y_val=y_te[:3])
    assert with_val.source != a.source


def test_jax_arrays_are_accepted():
    import jax.numpy as jnp

    x_tr, y_tr, x_te, y_te = arrays()
    ds = data.from_arrays(
        jnp.asarray(x_tr), jnp.asarray(y_tr), jnp.asarray(x_te), jnp.asarray(y_te)
    )
    assert isinstance(ds.x_train, np.ndarray) and ds.task == "classification"
    np.testing.assert_array_equal(ds.y_train, y_tr)


def test_a_validation_set_given_as_arrays_is_kept():
    x_tr, y_tr, x_te, y_te = arrays()
    ds = data.from_arrays(x_tr, y_tr, x_te, y_te, x_val=x_te[:5], y_val=y_te[:5])
    assert ds.num_val == 5 and ds.x_val.dtype == np.float32 and ds.y_val.dtype == np.int32
    np.testing.assert_array_equal(ds.y_val, y_te[:5])
    assert not ds.x_val.flags.writeable
    assert data.describe(ds)["val_counts"] == np.bincount(y_te[:5], minlength=3).tolist()
    with pytest.raises(ValueError, match="x_val was given without y_val; pass both or neither"):
        data.from_arrays(x_tr, y_tr, x_te, y_te, x_val=x_te)
    with pytest.raises(ValueError, match="x_val has 12 rows but y_val 5"):
        data.from_arrays(x_tr, y_tr, x_te, y_te, x_val=x_te, y_val=y_te[:5])
    with pytest.raises(ValueError, match="already has a validation split"):
        data.split_validation(ds, val_size=3)


SECRET = 7654.321  # a value the error messages must never print


@pytest.mark.parametrize(
    "change, error, message",
    [
        (dict(y_train=lambda a: a[:-1]), ValueError, "^x_train has 40 rows but y_train 39$"),
        (
            dict(x_test=lambda a: a[:, :3]),
            ValueError,
            r"x_test has examples of shape \(3,\) but x_train \(5,\)",
        ),
        (
            dict(x_train=lambda a: a[:, 0]),
            ValueError,
            r"x_train has shape \(40,\): one number per example",
        ),
        (
            dict(x_test=lambda a: a[:0], y_test=lambda a: a[:0]),
            ValueError,
            "x_test and y_test are empty",
        ),
        (
            dict(x_train=lambda a: np.where(a > 1, np.nan, a)),
            ValueError,
            "x_train holds .* non-finite",
        ),
        (dict(x_train=lambda a: a * 1e300), ValueError, "x_train holds .* non-finite .* float32"),
        (dict(y_train=lambda a: -a - 1), ValueError, "y_train holds labels below 0"),
        (  # 2-D labels that are not one-hot rows (one-hot rows are labels: see the issue 24 tests)
            dict(y_train=lambda a: 2 * np.eye(3)[a].astype(int)),
            ValueError,
            r"y_train has shape \(40, 3\); .*only when each row is a single 1 and zeros; for other rows pass "
            r"y.argmax\(axis=1\)",
        ),
        (
            dict(x_train=lambda a: a.astype(str)),
            TypeError,
            r"x_train has dtype <U\d+ \(shape \(40, 5\)\); expected numbers",
        ),
        (dict(y_test=lambda a: a.astype(object)), TypeError, "y_test has dtype object"),
        (dict(x_test=lambda a: None), TypeError, "x_test is missing"),
        (
            dict(x_train=lambda a: [[1.0], [1.0, 2.0]]),
            TypeError,
            "x_train is not an array of numbers",
        ),
    ],
    ids=[
        "rows",
        "shape",
        "1d",
        "empty",
        "nan",
        "overflow",
        "negative",
        "not_onehot",
        "strings",
        "object",
        "none",
        "ragged",
    ],
)
def test_bad_arrays_get_one_line_without_the_values(change, error, message):
    x_tr, y_tr, x_te, y_te = arrays()
    x_tr[1, 1] = x_te[1, 1] = SECRET
    given = dict(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    for key, f in change.items():
        given[key] = f(given[key])
    with pytest.raises(error, match=message) as e:
        data.from_arrays(**given)
    text = str(e.value)
    assert "\n" not in text and len(text) < 250 and "7654" not in text and "[" not in text


def test_bad_task_and_name():
    x_tr, y_tr, x_te, y_te = arrays()
    with pytest.raises(
        ValueError,
        match="unknown task 'multiclass'; valid tasks: classification, binary, regression",
    ):
        data.from_arrays(x_tr, y_tr, x_te, y_te, task="multiclass")
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        data.from_arrays(x_tr, y_tr, x_te, y_te, name="")


# ------------------------------------------------------------------------------------------
# split_validation


def numbered(n=50):
    """Inputs whose first feature is the example's index, so each row can be traced."""
    x = np.zeros((n, 3))
    x[:, 0] = np.arange(n)
    return data.from_arrays(x, np.arange(n) % 4, x[:7], np.arange(7) % 4, name="numbered")


def test_split_validation_holds_out_a_fixed_subset():
    ds = numbered()
    v = data.split_validation(ds, val_size=12, seed=3)
    assert (v.num_train, v.num_val, v.num_test) == (38, 12, 7)
    train_ids, val_ids = v.x_train[:, 0].astype(int), v.x_val[:, 0].astype(int)
    # the documented recipe: the first val_size of numpy's permutation, each part in the original order
    perm = np.random.default_rng(3).permutation(50)
    np.testing.assert_array_equal(val_ids, np.sort(perm[:12]))
    np.testing.assert_array_equal(train_ids, np.sort(perm[12:]))
    np.testing.assert_array_equal(v.y_val, val_ids % 4)  # labels travel with their inputs
    np.testing.assert_array_equal(v.y_train, train_ids % 4)
    assert set(train_ids) | set(val_ids) == set(range(50)) and not set(train_ids) & set(val_ids)
    again = data.split_validation(ds, val_size=12, seed=3)
    np.testing.assert_array_equal(again.x_val, v.x_val)  # the same examples every call
    other = data.split_validation(ds, val_size=12, seed=4)
    assert set(other.x_val[:, 0].astype(int)) != set(val_ids)
    # everything else is kept
    assert (v.name, v.source, v.task, v.num_classes, v.input_shape) == (
        ds.name,
        ds.source,
        ds.task,
        ds.num_classes,
        ds.input_shape,
    )
    assert v.x_test is ds.x_test and not v.x_val.flags.writeable and not v.x_train.flags.writeable
    assert ds.num_train == 50 and ds.x_val is None  # the original is unchanged


def test_split_validation_by_fraction_and_on_a_loaded_dataset(cache):
    ds = numbered(50)
    assert data.split_validation(ds, val_fraction=0.2).num_val == 10
    assert data.split_validation(ds, val_fraction=0.02).num_val == 1
    assert (
        data.split_validation(ds, val_fraction=0.13).num_val == 6
    )  # 6.5 rounds to 6 (half to even)
    digits = data.load("digits")
    assert digits.task == "classification" and digits.x_val is None and digits.num_val == 0
    v = data.split_validation(digits, val_fraction=0.25, seed=0)
    assert (v.num_train, v.num_val) == (1078, 359) and v.x_val.shape == (359, 8, 8, 1)
    d = data.describe(v)
    assert d["num_val"] == 359 and sum(d["val_counts"]) == 359 and sum(d["train_counts"]) == 1078


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of val_size and val_fraction"),
        ({"val_size": 5, "val_fraction": 0.1}, "exactly one of val_size and val_fraction"),
        (
            {"val_size": 0},
            r"val_size=0 is out of range: numbered has 50 training examples, so val_size must be 1..49",
        ),
        ({"val_size": 50}, "val_size=50 is out of range"),
        ({"val_size": 2.0}, "val_size must be an integer"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \(0, 1\)"),
        ({"val_fraction": 0.0}, r"val_fraction must be in \(0, 1\)"),
        ({"val_fraction": 0.005}, "gives 0 validation examples; it must give 1..49"),
        ({"val_fraction": 0.995}, "gives 50 validation examples"),
        ({"val_size": 5, "seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_split_validation_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.split_validation(numbered(), **kwargs)


def test_dataset_defaults_keep_old_constructions_working():
    fields = {f.name: f.default for f in dataclasses.fields(data.Dataset)}
    assert (
        fields["task"] == "classification" and fields["x_val"] is None and fields["y_val"] is None
    )


def test_the_repr_shows_sizes_not_arrays():
    x_tr, y_tr, x_te, y_te = arrays()
    x_tr[0, 0] = SECRET
    ds = data.split_validation(data.from_arrays(x_tr, y_tr, x_te, y_te, name="mine"), val_size=4)
    text = repr(ds)
    assert text.startswith(
        "Dataset(name='mine', task='classification', num_classes=3, input_shape=(5,), "
    )
    assert "num_train=36, num_val=4, num_test=12, source='arrays:sha256:" in text
    assert "7654" not in text and "array(" not in text


# ------------------------------------------------------------------------------------------------------------
# Issue 24: labels that mean classes, and inputs that no model can take.


def _ambiguous(lo, hi, distinct, dtype="float32"):
    return (
        f"y_train is {dtype} but every target is a whole number from {lo} to {hi} ({distinct} distinct values): "
        "class labels or numbers? pass task='classification' to train them as class labels, or "
        "task='regression' to fit them as numbers"
    )


def test_class_labels_stored_as_floats_are_never_regression_silently(caplog):
    x_tr, y_tr, x_te, y_te = arrays(classes=5)  # labels 0..4, all present in the 40 training rows
    f_tr, f_te = y_tr.astype("float32"), y_te.astype("float32")
    with pytest.raises(ValueError) as e:
        data.from_arrays(x_tr, f_tr, x_te, f_te)
    assert str(e.value) == _ambiguous(0, 4, 5)
    for y, lo, hi, distinct, dtype in (
        (y_tr + 1.0, 1, 5, 5, "float64"),  # 1-based labels, float64 as a CSV reader gives them
        (f_tr[:, None], 0, 4, 5, "float32"),  # a column
        ((y_tr > 1).astype("float32"), 0, 1, 2, "float32"),  # 0/1 labels
    ):
        with pytest.raises(ValueError) as e:
            data.from_arrays(x_tr, y, x_te, np.ones(len(x_te)))
        assert str(e.value) == _ambiguous(lo, hi, distinct, dtype)
    # asked for: the labels are classes (exactly the integer ones), or numbers
    ds = data.from_arrays(x_tr, f_tr, x_te, f_te, task="classification")
    assert (ds.task, ds.num_classes, ds.y_train.dtype) == ("classification", 5, np.int32)
    np.testing.assert_array_equal(ds.y_train, y_tr)
    assert (
        ds.source == data.from_arrays(x_tr, y_tr, x_te, y_te).source
    )  # the same data as int labels
    reg = data.from_arrays(x_tr, f_tr, x_te, f_te, task="regression")
    assert (reg.task, reg.num_classes, reg.y_train.dtype) == ("regression", 1, np.float32)
    # clearly continuous float targets are regression, as before
    for shift in (0.5, -2.0, 25.0):  # a fraction, negative values, whole numbers from 25 on
        assert data.from_arrays(x_tr, f_tr + shift, x_te, f_te + shift).task == "regression"
    # a fraction in y_test
    assert data.from_arrays(x_tr, f_tr, x_te, f_te + 0.5).task == "regression"
    assert not caplog.records


def test_one_hot_rows_are_class_labels_with_a_notice(caplog):
    x_tr, y_tr, x_te, y_te = arrays(classes=5)
    eye = np.eye(6, dtype="float32")  # Keras' to_categorical(y, 6): class 5 has no example
    with caplog.at_level("INFO", logger="jinit"):
        ds = data.from_arrays(x_tr, eye[y_tr], x_te, eye[y_te])
    assert (ds.task, ds.num_classes, ds.y_train.dtype, ds.y_test.dtype) == (
        "classification",
        6,
        np.int32,
        np.int32,
    )
    np.testing.assert_array_equal(ds.y_train, y_tr)
    np.testing.assert_array_equal(ds.y_test, y_te)
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "jinit.data",
            "WARNING",
            "y_train holds one-hot rows (6 columns): trained as classification of the labels "
            "y.argmax(axis=1); pass task='classification' to say so (no notice), or task='regression' to fit "
            "6 targets",
        )
    ]
    caplog.clear()
    with caplog.at_level("INFO", logger="jinit"):
        asked = data.from_arrays(x_tr, eye[y_tr], x_te, eye[y_te], task="classification")
        as_ints = data.from_arrays(
            x_tr, eye[y_tr].astype(int), x_te, y_te, task="classification", num_classes=6
        )
    assert not caplog.records
    assert (
        asked.source
        == as_ints.source
        == ds.source
        == data.from_arrays(x_tr, y_tr, x_te, y_te, num_classes=6).source
    )
    reg = data.from_arrays(x_tr, eye[y_tr], x_te, eye[y_te], task="regression")
    assert (reg.task, reg.num_classes, reg.y_train.shape) == ("regression", 6, (40, 6))
    binary = data.from_arrays(x_tr, np.eye(2)[y_tr % 2], x_te, y_te % 2, task="binary")
    np.testing.assert_array_equal(binary.y_train, y_tr % 2)
    with pytest.raises(
        ValueError, match=r"^y_train is one-hot with 6 columns but num_classes=5; one-hot"
    ):
        data.from_arrays(x_tr, eye[y_tr], x_te, y_te, num_classes=5)
    with pytest.raises(
        ValueError, match=r"^y_test is one-hot with 5 columns but y_train with 6; one-hot"
    ):
        data.from_arrays(x_tr, eye[y_tr], x_te, np.eye(5)[y_te])


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(x_train=np.zeros((40, 0)), x_test=np.zeros((12, 0))),
            r"x_train has shape (40, 0): examples of 0 values; inputs need at least one feature",
        ),
        (
            dict(x_train=np.zeros((40, 3, 0)), x_test=np.zeros((12, 3, 0))),
            r"x_train has shape (40, 3, 0): examples of 0 values; inputs need at least one feature",
        ),
        (
            dict(y_train=np.zeros((40, 0)), y_test=np.zeros((12, 0))),
            "y_train has shape (40, 0): no target per example; pass one label (n,) or targets (n, d) "
            "with d >= 1",
        ),
        (
            dict(num_classes=2**63),
            "num_classes must be a positive integer of at most 2**31 - 1 (labels are int32), got "
            "9223372036854775808",
        ),
        (
            dict(num_classes=np.int64(2**31)),
            "num_classes must be a positive integer of at most 2**31 - 1 (labels are int32), got "
            "np.int64(2147483648)",
        ),
    ],
    ids=["0_features", "0_channels", "0_targets", "2**63_classes", "2**31_classes"],
)
def test_inputs_no_model_can_take_are_one_value_error(change, message):
    x_tr, y_tr, x_te, y_te = arrays()
    given = {**dict(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te), **change}
    with pytest.raises(ValueError) as e:
        data.from_arrays(**given)
    assert str(e.value) == message
    assert data.from_arrays(x_tr, y_tr, x_te, y_te, num_classes=2**31 - 1).num_classes == 2**31 - 1
