"""Trackers (jinit.sweep.trackers): one run per model, read back and compared with results.csv.

TensorBoard runs are read with tensorboard's own EventAccumulator, W&B runs (offline mode: there is no network)
from their .wandb files; both must hold, for every model, exactly the (step, value) pairs of its rows of
results.csv, under train/..., test/..., val/... tags.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jinit
from jinit import sweep
from jinit.sweep import trackers

# two schemes x two learning rates x two seeds, evaluated within epochs, with a validation split
CFG = sweep.SweepConfig(
    schemes=("zeros", "he_normal"),
    seeds=2,
    epochs=2,
    hidden=(8,),
    train_size=192,
    test_size=64,
    val_size=64,
    batch_size=32,
    learning_rate=(1e-3, 1e-2),
    eval_every=2,
)
TAGS = {
    "train/loss": "train_loss",
    "train/accuracy": "train_accuracy",
    "test/loss": "test_loss",
    "test/accuracy": "test_accuracy",
    "val/loss": "val_loss",
    "val/accuracy": "val_accuracy",
}


def _rows(curves: pd.DataFrame, scheme: str, lr: float, seed: int) -> pd.DataFrame:
    sel = (curves["scheme"] == scheme) & (curves["learning_rate"] == lr) & (curves["seed"] == seed)
    return curves[sel].sort_values("step")


def _expected(rows: pd.DataFrame, column: str) -> list[tuple[int, np.float32]]:
    """The (step, value) pairs of a column, as float32 (what the events hold); NaN (training at init) left out."""
    ok = rows[column].notna()
    return list(zip(rows["step"][ok].astype(int), rows[column][ok].astype(np.float32), strict=True))


class Collect(trackers.Tracker):
    """A tracker of one's own: every record of every model, in memory."""

    def __init__(self):
        super().__init__(group="mine")
        self.seen, self.finished, self.closed = {}, [], 0

    def start(self, run):
        self.seen[run.index] = (run, [])
        return run.index

    def log(self, handle, record):
        self.seen[handle][1].append(record)

    def finish(self, handle):
        self.finished.append(handle)

    def close(self):
        self.closed += 1


@pytest.fixture(scope="module")
def own_tracker(tmp_path_factory):
    """The sweep of CFG with a tracker of one's own (no package needed), in chunks of 4 models."""
    cfg = dataclasses.replace(CFG, max_models_per_chunk=4)
    tracker = Collect()
    out = tmp_path_factory.mktemp("own") / "run"
    result = sweep.run(cfg, out=out, progress=False, callbacks=[tracker])
    return result, tracker


def test_own_tracker_gets_every_point_of_results_csv(own_tracker):
    result, tracker = own_tracker
    curves = result.curves
    assert sorted(tracker.seen) == list(range(8))
    # each model's run is finished once, when its chunk is trained, and close() comes once at the end
    assert sorted(tracker.finished) == list(range(8)) and tracker.closed == 1
    for run, recs in tracker.seen.values():
        rows = _rows(curves, run.scheme, run.axes["learning_rate"], run.seed)
        assert [r.step for r in recs] == list(rows["step"])
        assert [r.epoch for r in recs] == pytest.approx(list(rows["epoch"]))
        for t, column in TAGS.items():
            got = [(r.step, np.float32(r.scalars[t])) for r in recs if t in r.scalars]
            assert got == _expected(rows, column), (run.name, t)
        # the point at initialization carries no training value
        assert recs[0].step == 0 and not any(k.startswith("train/") for k in recs[0].scalars)


def test_model_runs_name_group_and_config(own_tracker):
    result, tracker = own_tracker
    run = tracker.seen[5][0]
    models = result.models
    assert (run.scheme, run.axes, run.seed) == (
        models["scheme"][5],
        {"learning_rate": models["learning_rate"][5]},
        models["seed"][5],
    )
    assert run.name == "he_normal/lr=0.001/seed_1" and run.group == "mine"
    assert run.config["scheme"] == "he_normal" and run.config["learning_rate"] == 1e-3
    assert run.config["epochs"] == 2 and run.config["seeds"] == 2


def test_run_names_are_folder_safe_and_distinct():
    a = jinit.rules({"kernel": "zeros"}, label="a/b")
    b = jinit.rules({"kernel": "he_normal"}, label="a b")
    cfg = sweep.SweepConfig(
        schemes=(a, b, "normal(stddev=0.1)"), seeds=1, epochs=1, hidden=(4,), train_size=64
    )
    runs = trackers.model_runs(sweep.make_plan(cfg), "g")
    names = [r.name for r in runs]
    assert len(set(names)) == 3
    assert names[0].startswith("a_b-") and names[1].startswith("a_b-")
    assert names[2] == "normal(stddev=0.1,_mean=0.0)/seed_0"


def test_tag_of_a_column():
    assert trackers.tag("test_accuracy") == "test/accuracy"
    assert trackers.tag("val_metric_loss") == "val/metric_loss"


class Failing(trackers.Tracker):
    def start(self, run):
        raise OSError("disk full")


def test_a_failing_tracker_stops_the_sweep_naming_it():
    cfg = sweep.SweepConfig(schemes=("he_normal",), seeds=2, epochs=3, hidden=(4,), train_size=64)
    with pytest.raises(RuntimeError, match=r"the tracker Failing failed: OSError: disk full"):
        sweep.run(cfg, progress=False, callbacks=[Failing()])


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"tensorboard": 3}, TypeError, "tensorboard: logdir must be a folder name, got 3"),
        ({"tensorboard": " "}, TypeError, "tensorboard: logdir must be a folder name"),
        ({"wandb": 5}, TypeError, "wandb must be a project name or a dict"),
        ({"wandb": {"project": "p", "name": "x"}}, TypeError, "wandb: name= is set by jinit"),
    ],
)
def test_bad_tracker_arguments_before_anything_loads(kw, error, match):
    cfg = sweep.SweepConfig(dataset="no_such_dataset")  # would fail later, when the data loads
    with pytest.raises(error, match=match):
        sweep.run(cfg, progress=False, **kw)


def test_missing_package_names_the_extra(monkeypatch):
    real = trackers.importlib.util.find_spec
    monkeypatch.setattr(
        trackers.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboardX" else real(name, *a),
    )
    with pytest.raises(ValueError, match=r"pip install 'jinit\[tensorboard\]'"):
        sweep.run(sweep.SweepConfig(dataset="no_such_dataset"), tensorboard="tb", progress=False)


# ------------------------------------------------------------------------------------------------ TensorBoard


@pytest.mark.slow
def test_tensorboard_runs_match_results_csv(tmp_path):
    pytest.importorskip("tensorboardX")
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    logdir = tmp_path / "tb"
    result = sweep.run(CFG, out=tmp_path / "run", progress=False, tensorboard=logdir)
    curves = pd.read_csv(tmp_path / "run" / "results.csv")
    folders = sorted(str(p.relative_to(logdir)) for p in logdir.glob("*/*/*") if p.is_dir())
    assert folders == sorted(
        f"{s}/lr={lr:g}/seed_{seed}"
        for s in ("zeros", "he_normal")
        for lr in (1e-3, 1e-2)
        for seed in (0, 1)
    )
    for name in folders:
        scheme, lr, seed = name.split("/")
        acc = ea.EventAccumulator(str(logdir / name))
        acc.Reload()
        assert set(acc.Tags()["scalars"]) == set(TAGS)
        rows = _rows(curves, scheme, float(lr[3:]), int(seed[5:]))
        for t, column in TAGS.items():
            got = [(e.step, np.float32(e.value)) for e in acc.Scalars(t)]
            assert got == _expected(rows, column), (name, t)
        text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
        config = json.loads(text.strip("`\n"))
        assert (config["scheme"], config["seed"], config["learning_rate"]) == (
            scheme,
            int(seed[5:]),
            float(lr[3:]),
        )
        hparams = acc.PluginTagToContent("hparams")
        assert scheme.encode() in hparams["_hparams_/session_start_info"]
    assert len(result.models) == 8


# --------------------------------------------------------------------------------------------------- W&B


def _wandb_records(path: Path) -> list:
    """The records of a .wandb file (W&B's leveldb-log format: 32 KiB blocks of CRC'd chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, out, buf = 32768, 7, [], b""
    while pos < len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            break
        chunk, pos = data[pos : pos + length], pos + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
            buf = b""
    return out


@pytest.mark.slow
def test_wandb_offline_runs_match_results_csv(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = dataclasses.replace(CFG, learning_rate=1e-2, val_size=None)
    out = tmp_path / "my_sweep"
    result = sweep.run(
        cfg, out=out, progress=False, wandb={"project": "jinit-test", "dir": str(tmp_path)}
    )
    files = sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == len(result.models) == 4
    seen = set()
    for f in files:
        recs = _wandb_records(f)
        run = next(r.run for r in recs if r.WhichOneof("record_type") == "run")
        assert run.run_group == "my_sweep" and run.project == "jinit-test"
        assert list(run.tags) == [run.job_type]
        scheme, seed = run.display_name.split("/")
        assert run.job_type == scheme
        seen.add(run.display_name)
        rows = _rows(result.curves.assign(learning_rate=1e-2), scheme, 1e-2, int(seed[5:]))
        history = {}
        for r in recs:
            if r.WhichOneof("record_type") == "history":
                items = {i.nested_key[0] or i.key: json.loads(i.value_json) for i in r.history.item}
                history[int(items["_step"])] = items
        assert sorted(history) == list(rows["step"])
        for t, column in {k: v for k, v in TAGS.items() if not k.startswith("val/")}.items():
            got = [(s, np.float32(h[t])) for s, h in sorted(history.items()) if t in h]
            assert got == _expected(rows, column), (run.display_name, t)
    assert seen == {f"{s}/seed_{i}" for s in ("zeros", "he_normal") for i in (0, 1)}
