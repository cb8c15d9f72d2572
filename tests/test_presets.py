"""The modern schemes and models by name (jinit.presets, jinit.modern.named) and on the command line:
``jinit schemes`` lists them with what they need, ``jinit sweep --model resmlp|transformer`` trains them, a modern
name elsewhere points to the Python API, and the combinations that mean something else are said."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

import jinit
from jinit import cli, models, modern, presets, propagation, sweep

MODERN = ("gpt2", "fixup", "deepnet", "mup", "rezero", "skipinit", "zero_gamma")


def test_jinit_schemes_lists_the_modern_schemes_with_what_they_need(capsys):
    assert cli.main(["schemes"]) == 0
    out = capsys.readouterr().out
    section = out[out.index("residual and transformer schemes") :]
    for name in MODERN:
        req = modern.MODERN[name]
        line = next(ln for ln in section.splitlines() if ln.startswith(name + " "))
        assert req.model in line and req.needs in line and req.python in line
    assert "depth" in modern.MODERN["fixup"].needs and "base width" in modern.MODERN["mup"].needs
    assert modern.MODERN["fixup"].model == "resmlp" and modern.MODERN["gpt2"].model == "transformer"


def test_named_schemes_are_the_python_calls_for_the_model():
    assert modern.named("fixup", model="resmlp", depth=6) == jinit.fixup(6, 2)
    assert modern.named("gpt2", model="transformer", depth=3) == jinit.gpt2(3)
    # deepnet's qkv rule is a closure: compared by label
    deepnet = modern.named("deepnet", model="transformer", depth=3)
    assert deepnet.label == jinit.deepnet(3, decoder=True).label
    assert deepnet.label == "deepnet(n_layers=3, decoder=True)"
    assert modern.named("zero_gamma", model="resmlp", depth=3) == jinit.zero_gamma(2)
    assert modern.named("mup", model="resmlp", depth=3, base_width=16).label == jinit.mup(16).label
    mup_t = modern.named("mup", model="transformer", depth=3, base_width=16)
    assert mup_t.label == "mup(base_width=16, std=0.02, inputs=embedding)"
    with pytest.raises(ValueError, match="mup needs a base width"):
        modern.named("mup", model="resmlp", depth=3)
    with pytest.raises(ValueError, match="gpt2 is written for --model transformer"):
        modern.named("gpt2", model="resmlp", depth=3)


@pytest.mark.parametrize("name", MODERN)
def test_a_modern_name_elsewhere_points_to_the_python_api(name):
    with pytest.raises(ValueError) as e:
        sweep.SweepConfig(schemes=("he_normal", name))
    text = str(e.value)
    assert f"{modern.MODERN[name].python} in Python" in text and "no catalogue name" in text
    assert "jinit sweep --model" in text


def test_the_cli_says_it_in_one_line(capsys):
    assert cli.main(["sweep", "--schemes", "he_normal,fixup"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "jinit.fixup(n_blocks, m) in Python" in err and "--model resmlp --depth N" in err


def test_preset_resmlp_network_and_schemes():
    p = presets.preset("resmlp", "fixup,rezero,he_normal", depth=3, width=16)
    assert [str(s) for s in p.schemes] == ["fixup(n_blocks=3, m=2)", "rezero", "he_normal"]
    assert p.data is None and p.notes == ()
    module = p.model(jinit.he_normal(), jinit.zeros())
    assert isinstance(module, models.ResidualMLP)
    assert (module.depth, module.width, module.norm, module.gate, module.scalar_bias) == (
        3,
        16,
        None,
        "scalar",
        True,
    )
    assert module.num_classes == 10  # digits
    normed = presets.preset("resmlp", "zero_gamma", norm="layer").model(None, None)
    assert (normed.norm, normed.scalar_bias) == ("layer", False)


def test_preset_notes_say_what_a_combination_means():
    (note,) = presets.preset("resmlp", "rezero,skipinit").notes
    assert "rezero and skipinit draw the same initial values" in note
    notes = presets.preset("resmlp", "fixup,he_normal", norm="batch").notes
    assert len(notes) == 1 and "WITHOUT normalization" in notes[0] and "batch norm" in notes[0]
    notes = presets.preset("resmlp", "rezero", norm="layer").notes
    assert notes == (
        "rezero is proposed for residual networks without normalization; this one has a layer norm",
    )
    assert "jinit.mup_optimizer" in presets.preset("resmlp", "mup", base_width=16).notes[0]
    assert "post-LN" in presets.preset("transformer", "deepnet").notes[0]
    assert presets.preset("transformer", "gpt2,he_normal").notes == ()


@pytest.mark.parametrize(
    ("args", "kw", "match"),
    [
        (("resmlp", "zero_gamma"), {}, "give the network a norm, --norm layer or --norm batch"),
        (("resmlp", "mup"), {}, "mup needs a base width"),
        (("transformer", "fixup"), {}, "fixup is written for --model resmlp"),
        (("transformer", "gpt2"), {"norm": "layer"}, "--norm applies to --model resmlp"),
        (("transformer", "gpt2"), {"dataset": "digits"}, "token sequences"),
        (("transformer", "gpt2"), {"width": 33}, "must be even"),
        (("resmlp", "he_normal"), {"depth": 0}, "depth must be an integer >= 1, got 0"),
        (
            ("resmlp", "he_normal"),
            {"norm": "group"},
            "unknown norm 'group'; valid: none, layer, batch",
        ),
        (("mlp", "he_normal"), {}, "unknown preset model 'mlp'"),
    ],
)
def test_preset_errors(args, kw, match):
    with pytest.raises(ValueError, match=match):
        presets.preset(*args, **kw)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--depth", "3"], "--depth applies to --model resmlp or transformer, not mlp"),
        (
            ["--model", "cnn", "--norm", "layer"],
            "--norm applies to --model resmlp or transformer, not cnn",
        ),
        (["--model", "resmlp", "--hidden", "8"], "--hidden is the mlp's or cnn's"),
        (["--model", "resmlp", "--depth", "x"], "--depth expects an integer, got 'x'"),
        (["--model", "transformer", "--check-determinism"], "not with --model transformer"),
    ],
)
def test_cli_preset_flag_errors(argv, match, capsys):
    assert cli.main(["sweep", *argv]) == 2
    assert match in capsys.readouterr().err


@pytest.mark.slow
def test_cli_resmlp_sweep_trains_fixup_rezero_skipinit(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["sweep", "--model", "resmlp", "--depth", "3", "--width", "16"]
    argv += ["--schemes", "fixup,rezero,skipinit,he_normal", "--seeds", "2", "--epochs", "1"]
    argv += ["--train-size", "256", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "jinit sweep: note: rezero and skipinit draw the same initial values" in captured.err
    models_csv = pd.read_csv(out / "models.csv")
    assert list(dict.fromkeys(models_csv["scheme"])) == [
        "fixup(n_blocks=3, m=2)",
        "rezero",
        "skipinit",
        "he_normal",
    ]
    # what the note says: rezero's and skipinit's models are the same, seed for seed
    sha = models_csv.set_index(["scheme", "seed"])["param_sha256"]
    for s in (0, 1):
        assert sha["rezero", s] == sha["skipinit", s] != sha["he_normal", s]
    r = sweep.load(out)
    assert r.meta["model"]["name"] == "ResidualMLP" and "depth=3" in r.meta["model"]["description"]


@pytest.mark.slow
def test_cli_transformer_sweep(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["sweep", "--model", "transformer", "--depth", "2", "--width", "16"]
    argv += ["--schemes", "gpt2,he_normal", "--seeds", "2", "--epochs", "1", "--train-size", "256"]
    argv += ["--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    models_csv = pd.read_csv(out / "models.csv")
    assert list(dict.fromkeys(models_csv["scheme"])) == ["gpt2(n_layers=2, std=0.02)", "he_normal"]
    r = sweep.load(out)
    assert (
        r.config.dataset == "associative_recall"
        and r.meta["model"]["name"] == "LastTokenTransformer"
    )
    assert r.meta["n_test"] == presets.RECALL["n_test"]


@pytest.mark.slow
def test_coordinate_check_accepts_scheme_names():
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 4))
    y = jnp.arange(8) % 3

    def check(scheme):
        return propagation.coordinate_check(
            lambda w: models.MLP(hidden=(w,), num_classes=3),
            [4, 8],
            (x, y),
            optimizer=optax.sgd(0.1),
            steps=1,
            seeds=[5],
            scheme=scheme,
        )

    by_name = check("he_normal")
    pd.testing.assert_frame_equal(by_name, check(jinit.rules({"kernel": "he_normal"})))
    pd.testing.assert_frame_equal(by_name, check(lambda w: "HeNormal"))
    assert not np.allclose(by_name["l1"], check(None)["l1"])  # the model's own init: LeCun normal
    with pytest.raises(ValueError, match="coordinate_check: bad scheme 'he_nromal'.*he_normal"):
        check("he_nromal")
    with pytest.raises(TypeError, match="coordinate_check: scheme must be None, a scheme name"):
        check(3)
