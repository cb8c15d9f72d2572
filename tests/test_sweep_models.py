"""Your own Flax model in the sweep (issue 13 item 1): linen with BatchNorm + Dropout, NNX, a model without init
arguments, the errors, and what the run records."""

from __future__ import annotations

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jinit
from jinit import adapters, plots, sweep, train
from jinit.sweep.program import split_variables, state_variables

BASE = sweep.SweepConfig(
    schemes=("he_normal", "glorot_uniform"),
    seeds=2,
    epochs=2,
    batch_size=32,
    train_size=256,
    test_size=128,
    models_per_device=2,
)


class BNNet(nn.Module):
    """A linen model written the usual way: BatchNorm and Dropout driven by a ``train`` argument."""

    kernel_init: object
    bias_init: object

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape((x.shape[0], -1))  # digits images, 8 x 8 x 1
        # no bias before BatchNorm: its gradient is zero up to rounding, which Adam would blow up to lr-sized steps
        x = nn.Dense(32, use_bias=False, kernel_init=self.kernel_init)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        x = nn.Dropout(0.2, deterministic=not train)(x)
        return nn.Dense(10, kernel_init=self.kernel_init, bias_init=self.bias_init)(x)


class NnxNet(nnx.Module):
    """An NNX model as the NNX guides write it: train/eval modes, BatchNorm, Dropout with its own rngs."""

    def __init__(self, kernel_init, bias_init, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(64, 32, use_bias=False, kernel_init=kernel_init, rngs=rngs)
        self.bn = nnx.BatchNorm(32, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.fc2 = nnx.Linear(32, 10, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)

    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        return self.fc2(self.drop(nnx.relu(self.bn(self.fc1(x)))))


def _alone(result, setup_model, cfg, k, scheme_label, seed):
    """Model ``k`` of ``result`` trained alone by the plain reference loop from the same initial variables and keys."""
    setup = sweep.make_plan(cfg, model=setup_model).inputs
    variables = jax.tree.map(
        lambda a: a[0], sweep.initial_params(cfg, [(scheme_label, seed)], model=setup_model)
    )
    params, state = split_variables(variables)
    keys = sweep.model_keys(cfg.seed, scheme_label, seed, cfg.vary)
    scheme = dict(setup.schemes)[scheme_label]
    alone = train.train_plain(
        sweep.inputs.model_fns(setup.make_model, scheme, setup.bias_init),
        params,
        train.make_optimizer(cfg.optimizer, cfg.learning_rate),
        setup.x_train,
        setup.y_train,
        setup.x_test,
        setup.y_test,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        data_key=keys.data,
        dropout_key=keys.dropout,
        model_state=state,
    )
    return state_variables(alone.state), jax.tree.map(lambda a: a[k], result.params)


@pytest.mark.parametrize("factory", [BNNet, NnxNet], ids=["linen", "nnx"])
def test_batchnorm_and_dropout_models_train_like_a_plain_loop(factory):
    """Every model of the sweep ends with the parameters AND the BatchNorm running statistics that a plain
    single-model loop reaches from the same start and keys: the statistics are updated by the forward pass (they
    move away from their init) and never by the optimizer."""
    result = sweep.run(BASE, model=factory, progress=False, keep_params=True)
    assert "batch_stats" in result.params
    init = sweep.initial_params(BASE, model=factory)
    for k, (label, seed) in enumerate(
        zip(result.models["scheme"], result.models["seed"], strict=True)
    ):
        alone, swept = _alone(result, factory, BASE, k, label, int(seed))
        assert jax.tree.structure(alone) == jax.tree.structure(swept)
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(swept), strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-4, atol=2e-5)
    # the running statistics moved from their initial values (mean 0, var 1) by the forward pass
    moved = jax.tree.map(
        lambda a, b: float(np.max(np.abs(a - b))), result.params["batch_stats"], init["batch_stats"]
    )
    assert min(jax.tree.leaves(moved)) > 1e-3
    assert np.all(np.isfinite(result.models["final_accuracy"]))
    # above chance (0.1) after 16 steps, evaluated with running averages that have seen 16 batches
    assert result.models["final_accuracy"].mean() > 0.15


def test_evaluation_uses_running_averages_and_no_dropout():
    """The test accuracy the sweep reports is that of evaluation mode (running averages, no dropout): it is
    reproduced by applying the final variables with train=False."""
    cfg = BASE.__class__(**{**BASE.__dict__, "schemes": ("he_normal",), "seeds": 2})
    result = sweep.run(cfg, model=BNNet, progress=False, keep_params=True)
    setup = sweep.make_plan(cfg, model=BNNet).inputs
    fns = sweep.inputs.model_fns(BNNet, setup.schemes[0][1], setup.bias_init)
    for k in range(2):
        params, state = split_variables(jax.tree.map(lambda a, k=k: a[k], result.params))
        out, _ = fns.apply(params, state, jnp.asarray(setup.x_test), False, None)
        acc = float(np.mean(np.argmax(np.asarray(out), -1) == setup.y_test))
        assert acc == pytest.approx(result.models["final_accuracy"][k], abs=1e-6)
        train_out, _ = fns.apply(params, state, jnp.asarray(setup.x_test), True, jax.random.key(0))
        assert not np.allclose(np.asarray(out), np.asarray(train_out))  # the modes differ


def test_linen_and_nnx_models_in_one_process_get_their_own_programs():
    a = sweep.run(BASE, model=BNNet, progress=False)
    b = sweep.run(BASE, model=NnxNet, progress=False)
    assert a.meta["model"]["kind"] == "linen" and b.meta["model"]["kind"] == "nnx"
    assert not set(a.models["param_sha256"]) & set(b.models["param_sha256"])


def test_the_run_folder_records_the_real_model(tmp_path):
    out = tmp_path / "run"
    result = sweep.run(BASE, model=NnxNet, out=out, progress=False)
    doc = json.loads((out / "config.json").read_text())
    assert doc["config"]["model"] == "custom:NnxNet"
    for unused in ("hidden", "channels", "activation"):
        assert doc["config"][unused] is None
    model = doc["meta"]["model"]
    assert model["name"] == "NnxNet" and model["kind"] == "nnx"
    assert model["param_count"] == 64 * 32 + 2 * 32 + 32 * 10 + 10
    again = sweep.load(out)
    assert again.config.model == "custom:NnxNet"
    assert "NnxNet" in plots._title(again) and "MLP" not in plots._title(again)
    # resuming the complete folder with the same model reads it back
    assert sweep.run(BASE, model=NnxNet, out=out, progress=False).models.equals(result.models)
    # a recorded config cannot rebuild your model: it says so
    with pytest.raises(ValueError, match="pass the model factory again"):
        sweep.run(again.config, progress=False)


def test_a_model_without_init_arguments_takes_rules_schemes():
    class Plain(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.fc = nnx.Linear(64, 10, rngs=rngs)

        def __call__(self, x):
            return self.fc(x.reshape((x.shape[0], -1)))

    last_zero = jinit.rules({"fc/bias": "ones", "kernel": "zeros"}, label="zero_kernels")
    cfg = BASE.__class__(**{**BASE.__dict__, "schemes": (last_zero,), "seeds": 1})
    init = sweep.initial_params(cfg, model=Plain)
    assert np.all(init["params"]["fc"]["kernel"] == 0)
    assert np.all(init["params"]["fc"]["bias"] == 1)
    with pytest.raises(ValueError, match="takes no kernel_init/bias_init"):
        sweep.run(BASE, model=Plain, progress=False)


@pytest.mark.parametrize(
    "model, match",
    [
        (BNNet(jax.nn.initializers.zeros, jax.nn.initializers.zeros), "pass a factory"),
        (lambda kernel_init, bias_init, mode, depth: None, "takes neither"),
    ],
    ids=["module instance", "bad factory signature"],
)
def test_bad_models_get_one_line_errors_before_compiling(model, match):
    programs = sweep.ProgramCache()
    with pytest.raises((TypeError, ValueError), match=match) as e:
        sweep.run(BASE, model=model, progress=False, programs=programs)
    assert "\n" not in str(e.value)
    assert programs.epoch_programs == programs.init_compiles == 0


def test_a_call_signature_jinit_cannot_drive_is_named():
    class Moded(nn.Module):
        kernel_init: object
        bias_init: object

        @nn.compact
        def __call__(self, x, mode):
            return nn.Dense(10, kernel_init=self.kernel_init)(x)

    with pytest.raises((TypeError, ValueError), match="mode") as e:
        sweep.run(BASE, model=Moded, progress=False)
    assert "\n" not in str(e.value)
    assert "scheme" not in str(e.value)  # the model's error, not a scheme's


def test_model_and_make_model_are_one_argument():
    with pytest.raises(
        TypeError, match="once, as model= .make_model= is its deprecated older name"
    ):
        sweep.run(BASE, model=BNNet, make_model=BNNet, progress=False)
    assert isinstance(adapters.model_fns(BNNet, None, None), adapters.ModelFns)


def test_make_model_is_deprecated_for_model():
    cfg = dataclasses.replace(
        BASE, dataset="no_such_dataset"
    )  # stops when the data loads, after the warning
    for call in (
        lambda: sweep.run(cfg, make_model=BNNet, progress=False),
        lambda: sweep.initial_params(cfg, make_model=BNNet),
        lambda: sweep.check_determinism(cfg, make_model=BNNet),
    ):
        with pytest.warns(
            DeprecationWarning, match="make_model= is deprecated: pass the same factory as model="
        ) as w:
            with pytest.raises((ValueError, FileNotFoundError)):
                call()
        assert w[0].filename == __file__  # the warning points at the caller's line


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        (
            {"keep_params": "runs/x"},
            TypeError,
            "keep_params must be True or False, got 'runs/x'; the run folder is out=; save_params=True writes",
        ),
        (
            {"save_params": "runs/x"},
            TypeError,
            "save_params must be True or False, got 'runs/x'; the run folder is out=; keep_params=True returns them in memory",
        ),
        (
            {"save_params": 1},
            TypeError,
            "save_params must be True or False, got 1; keep_params=True",
        ),
        (
            {"save_params": True},
            ValueError,
            "pass out= .* for the parameters in memory without a folder: keep_params=True",
        ),
        (
            {"model": "mlp"},
            TypeError,
            "model= takes your own model's factory, got the name 'mlp'; a built-in model is SweepConfig",
        ),
    ],
)
def test_params_and_model_arguments_say_which_one_was_meant(kw, error, match):
    with pytest.raises(error, match=match):
        sweep.run(BASE, progress=False, **kw)


def test_fields_of_the_built_in_models_are_said_to_be_ignored_with_your_model(caplog):
    cfg = dataclasses.replace(BASE, hidden=(7,), activation="tanh")
    with caplog.at_level("WARNING", logger="jinit.sweep"):
        sweep.make_plan(cfg, model=BNNet)
    (record,) = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert record.getMessage() == (
        "hidden=(7,), activation='tanh': the built-in models' settings; your model= is trained as it is, so they "
        "are ignored"
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="jinit.sweep"):
        sweep.make_plan(BASE, model=BNNet)  # the defaults: nothing to say
    assert not [r for r in caplog.records if "ignored" in r.getMessage()]


def test_seeds_below_one_are_refused_when_the_config_is_made():
    for bad in (-3, 0):
        with pytest.raises(ValueError, match=f"seeds must be >= 1, got {bad}"):
            sweep.SweepConfig(seeds=bad)


def test_the_description_of_a_multi_scheme_sweep_names_no_single_scheme():
    cfg = sweep.SweepConfig(schemes=("he_normal", "zeros"), hidden=(8,), train_size=64)
    info = sweep.make_plan(cfg).inputs.model_info
    assert (
        "kernel_init=<each model's scheme>" in info.description
        and "he_normal" not in info.description
    )
    one = sweep.make_plan(dataclasses.replace(cfg, schemes=("he_normal",))).inputs.model_info
    assert "kernel_init=he_normal(" in one.description


def test_what_the_run_records_of_your_model_and_optimizer_is_stable():
    """meta["model"]["description"] of a sweep of several schemes names none as the kernel init (it named the
    first); meta["optimizer"]["custom"] has no memory address, so two processes (or two runs) record the same."""
    import optax

    from jinit.sweep.plan import describe_plan

    def sgd(lr):
        return optax.sgd(lr)

    metas = [describe_plan(sweep.make_plan(BASE, model=BNNet, optimizer=sgd)) for _ in range(2)]
    meta = metas[0]
    description = meta["model"]["description"]
    assert "kernel_init=<each model's scheme>" in description, description
    assert "he_normal" not in description and "glorot" not in description
    assert meta["optimizer"]["custom"] == (
        "<function test_what_the_run_records_of_your_model_and_optimizer_is_stable.<locals>.sgd>"
    )
    assert metas[1]["optimizer"]["custom"] == meta["optimizer"]["custom"]
    chain = sweep.make_plan(BASE, model=BNNet, optimizer=optax.chain(optax.adam(1e-3)))
    assert "0x" not in describe_plan(chain)["optimizer"]["custom"]
    one = sweep.make_plan(dataclasses.replace(BASE, schemes=("he_normal",)), model=BNNet)
    assert "he_normal" in describe_plan(one)["model"]["description"]
