"""jinit.data through tensorflow-datasets (no TensorFlow, no network).

Two ways: ``tfds.testing.mock_data``, which patches ``tfds.data_source`` to serve random examples
of the right structure; and a real (tiny) ArrayRecord copy of ``mnist`` that the test writes
itself in tfds's on-disk layout, so the real reader, deserializer and PNG decoding are exercised.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from jinit import data

tfds = pytest.importorskip("tensorflow_datasets")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("JINIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("JINIT_DATA_DIR", raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no-tfds"))
    return tmp_path


N = 13  # examples per split under the mock


@pytest.mark.parametrize(
    "name, shape",
    [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))],
)
def test_tfds_mock(env, name, shape):
    with tfds.testing.mock_data(num_examples=N, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = data.load(name, source="tfds")
        auto = data.load(name)  # no IDX folder configured: auto goes on to tfds
    assert ds.source.startswith("tfds:") and auto.source == ds.source
    assert ds.x_train.shape == (N, *shape) and ds.x_test.shape == (N, *shape)
    assert ds.input_shape == shape
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0 and ds.x_train.max() > 0.5
    np.testing.assert_array_equal(ds.x_train * 255, np.round(ds.x_train * 255))
    assert ds.y_train.min() >= 0 and ds.y_train.max() < 10
    np.testing.assert_array_equal(auto.x_train, ds.x_train)  # the mock is deterministic
    # nothing on disk to fingerprint: random mock data must not be cached
    assert not (env / "cache").exists()
    flat = None
    with tfds.testing.mock_data(num_examples=N, policy=tfds.testing.MockPolicy.USE_CODE):
        flat = data.load(name, source="tfds", flatten=True, num_train=5)
    assert flat.x_train.shape == (5, int(np.prod(shape)))


def test_tfds_mock_is_not_used_when_an_idx_folder_is_there(env, tmp_path):
    from test_data import make_arrays, make_idx_folder

    folder = make_idx_folder(tmp_path / "idx", make_arrays())
    with tfds.testing.mock_data(num_examples=N, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = data.load("mnist", data_dir=folder)
    assert ds.source == f"idx:{folder.resolve()}" and ds.num_train == 30


def write_array_record_mnist(data_dir, arrays, name="mnist"):
    """A real tfds copy of `mnist` (or another tfds dataset of 28x28x1 images and a label: `name`)
    (ArrayRecord) holding `arrays`, written without TensorFlow: tf.train.Example protos with
    PNG-encoded images, as tfds itself writes them."""
    from array_record.python.array_record_module import ArrayRecordWriter
    from PIL import Image
    from tensorflow_datasets.proto import tf_example_pb2, tf_feature_pb2

    builder = tfds.builder(name, data_dir=str(data_dir), file_format="array_record")
    builder.data_path.mkdir(parents=True, exist_ok=True)
    infos = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        template = tfds.core.ShardedFileTemplate(
            data_dir=builder.data_path,
            dataset_name=builder.name,
            split=split,
            filetype_suffix="array_record",
        )
        info = tfds.core.SplitInfo(
            name=split, shard_lengths=[len(y)], num_bytes=0, filename_template=template
        )
        writer = ArrayRecordWriter(
            str(template.sharded_filepath(shard_index=0, num_shards=1)), "group_size:1"
        )
        for image, label in zip(x, y, strict=True):
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            feature = {
                "image": tf_feature_pb2.Feature(
                    bytes_list=tf_feature_pb2.BytesList(value=[png.getvalue()])
                ),
                "label": tf_feature_pb2.Feature(
                    int64_list=tf_feature_pb2.Int64List(value=[int(label)])
                ),
            }
            example = tf_example_pb2.Example(features=tf_feature_pb2.Features(feature=feature))
            writer.write(example.SerializeToString())
        writer.close()
        infos.append(info)
    builder.info.set_splits(tfds.core.SplitDict(infos))
    builder.info.set_file_format("array_record")
    builder.info.write_to_directory(builder.data_path)


def test_tfds_real_array_record_copy(env, tmp_path, monkeypatch):
    from test_data import make_arrays

    arrays = make_arrays(n_train=37, n_test=11, seed=5)
    try:
        write_array_record_mnist(tmp_path / "tfds", arrays)
    except (ImportError, AttributeError, TypeError) as e:  # tfds internals moved
        pytest.skip(f"cannot write an ArrayRecord tfds copy with this tfds version: {e}")

    ds = data.load("mnist", data_dir=tmp_path / "tfds")  # no IDX files there: tfds
    assert ds.source == f"tfds:{tmp_path / 'tfds'}" and not ds.from_cache
    np.testing.assert_array_equal(ds.x_train[..., 0], arrays["x_train"] / np.float32(255))
    np.testing.assert_array_equal(ds.x_test[..., 0], arrays["x_test"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])

    again = data.load("mnist", data_dir=tmp_path / "tfds", source="tfds")
    assert again.from_cache and again.source == ds.source
    np.testing.assert_array_equal(again.x_train, ds.x_train)

    # TFDS_DATA_DIR is where tfds looks when no data_dir is given
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    via_env = data.load("mnist", source="tfds", cache=False)
    np.testing.assert_array_equal(via_env.y_test, arrays["y_test"])


# ------------------------------------------------------------------------------------------
# tfds datasets that are not built in


@pytest.mark.parametrize(
    "name, shape",
    [("kmnist", (28, 28, 1)), ("emnist/digits", (28, 28, 1)), ("svhn_cropped", (32, 32, 3))],
)
def test_any_prepared_tfds_dataset_loads_by_name(env, name, shape):
    assert name not in data.names()  # names() stays the built-in names
    with tfds.testing.mock_data(num_examples=N, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = data.load(name)
        flat = data.load(name, source="tfds", flatten=True, num_train=4)
    assert (ds.name, ds.task, ds.num_classes, ds.input_shape) == (name, "classification", 10, shape)
    assert ds.source == f"tfds:{env / 'no-tfds'}" and ds.x_val is None
    assert ds.x_train.shape == (N, *shape) and ds.x_test.shape == (N, *shape)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    # scaled like the built-in ones: uint8 pixels / 255
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0 and ds.x_train.max() > 0.5
    np.testing.assert_array_equal(ds.x_train * 255, np.round(ds.x_train * 255))
    assert 0 <= ds.y_train.min() and ds.y_train.max() < 10
    assert flat.x_train.shape == (4, int(np.prod(shape)))
    assert not (env / "cache").exists()  # mock data has no files to fingerprint: never cached
    d = data.describe(ds)
    assert sum(d["train_counts"]) == N and d["num_classes"] == 10


def test_unknown_and_unprepared_tfds_names(env):
    with pytest.raises(
        ValueError,
        match="unknown dataset 'no_such_set'; valid names: mnist, .*mnist1d, or a dataset tensorflow-datasets knows",
    ):
        data.load("no_such_set")
    with pytest.raises(ValueError, match="unknown dataset 'mnist1_d'; did you mean 'mnist1d'"):
        data.load("mnist1_d")
    with pytest.raises(FileNotFoundError) as e:  # tfds knows kmnist, but nothing is prepared
        data.load("kmnist")
    msg = str(e.value)
    assert (
        "could not load 'kmnist': it is not a built-in dataset (mnist, fashion_mnist, cifar10, digits, mnist1d)"
        in msg
    )
    assert (
        f"no prepared copy of kmnist in ArrayRecord or Parquet format under {env / 'no-tfds'}"
        in msg
    )
    assert "tfds build kmnist --file_format=array_record" in msg and "\n" not in msg
    with pytest.raises(FileNotFoundError, match=f"under {env / 'elsewhere'}"):
        data.load("kmnist", data_dir=env / "elsewhere")  # data_dir is the tfds data dir
    with pytest.raises(
        ValueError,
        match="'kmnist', not a built-in dataset, cannot be loaded from source 'idx'; its sources: auto, tfds",
    ):
        data.load("kmnist", source="idx")
    with pytest.raises(ValueError, match="unknown dataset '  '; valid names"):
        data.load("  ")


def test_a_tfds_dataset_without_image_and_label_features(env):
    with tfds.testing.mock_data(num_examples=N, policy=tfds.testing.MockPolicy.USE_CODE):
        with pytest.raises(
            ValueError,
            match=r"tfds dataset 'glue/cola' has the features \['sentence', 'label', 'idx'\]; .*from_arrays",
        ):
            data.load("glue/cola")


def test_a_real_array_record_copy_of_a_dataset_that_is_not_built_in(env, tmp_path):
    from test_data import make_arrays

    arrays = make_arrays(n_train=21, n_test=9, seed=7)
    try:
        write_array_record_mnist(tmp_path / "tfds", arrays, name="emnist/digits")
    except (ImportError, AttributeError, TypeError) as e:  # tfds internals moved
        pytest.skip(f"cannot write an ArrayRecord tfds copy with this tfds version: {e}")

    ds = data.load("emnist/digits", data_dir=tmp_path / "tfds")
    assert ds.source == f"tfds:{tmp_path / 'tfds'}" and not ds.from_cache
    assert (ds.name, ds.num_classes, ds.input_shape) == ("emnist/digits", 10, (28, 28, 1))
    np.testing.assert_array_equal(ds.x_train[..., 0], arrays["x_train"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    again = data.load("emnist/digits", data_dir=tmp_path / "tfds")
    assert again.from_cache  # cached under a folder name without the slash
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    (entry,) = [p.name for p in (env / "cache").iterdir()]
    assert entry.startswith("emnist_digits_") and "/" not in entry
