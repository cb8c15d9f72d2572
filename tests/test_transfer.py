"""jinit.transfer: the verdict logic on synthetic optima (a known slope recovered, an edge optimum flagged, too few
seeds inconclusive), the parameterizations as values, the layers' roles found from shapes, argument checks before
anything compiles, and (slow) a tiny end-to-end check, its resume and the ``jinit transfer --smoke`` command."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

import jinit
from jinit import data, models, transfer

ROOT = Path(__file__).resolve().parents[1]
X_DIGITS = np.zeros((1, 8, 8, 1), np.float32)
WIDTHS = (32, 64, 128, 256, 512)


def _synthetic(slope, *, seeds=8, widths=WIDTHS, noise=0.3, lo=-12, k=11, seed=0, shift=None):
    """Final losses [widths, seeds, lrs]: a parabola in log2(lr) around -7 + slope * log2(w / w0), each seed's
    optimum jittered by N(0, noise^2) and every loss by N(0, 0.01^2); ``shift`` moves one width's optimum."""
    rng = np.random.default_rng(seed)
    x = np.arange(lo, lo + k, dtype=np.float64)
    out = np.empty((len(widths), seeds, k))
    for s, w in enumerate(widths):
        opt = -7 + slope * np.log2(w / widths[0]) + (shift or {}).get(w, 0.0)
        for i in range(seeds):
            out[s, i] = (
                0.05 * (x - (opt + rng.normal(0, noise))) ** 2 + 0.5 + rng.normal(0, 0.01, k)
            )
    return x, out


# ------------------------------------------------------------------------------------------------ statistics


def test_parabolic_optimum_vertex_edges_and_divergence():
    x = np.array([-3.0, -2.0, -1.0, 0.0])
    # (x + 1.7)^2 sampled on the grid: the vertex is exactly -1.7, between the grid points -2 and -1
    opt, idx = transfer.parabolic_optimum(x, (x + 1.7) ** 2)
    assert idx == 1 and opt == pytest.approx(-1.7, abs=1e-12)
    opt, idx = transfer.parabolic_optimum(
        x, [4.0, 3.0, 2.0, 1.0]
    )  # falling to the end: the edge itself
    assert (opt, idx) == (0.0, 3)
    opt, idx = transfer.parabolic_optimum(
        x, [4.0, 1.0, np.inf, 0.5]
    )  # neighbour diverged: the grid point
    assert (opt, idx) == (0.0, 3)
    opt, idx = transfer.parabolic_optimum(x, [4.0, 1.0, np.nan, 2.0])
    assert (opt, idx) == (-2.0, 1)
    opt, idx = transfer.parabolic_optimum(x, [[np.inf] * 4, [1.0, 1.0, 1.0, 1.0]])
    assert (
        np.isnan(opt[0]) and idx[0] == -1 and opt[1] == -3.0
    )  # all diverged; a flat curve: its first point


def test_expanded_percentiles_match_hesterberg_by_hand():
    # n = 8: z = sqrt(8/7) * t_{0.975, 7} = 1.0690 * 2.3646 = 2.5279 -> tail 0.00574 (0.574%)
    low, high = transfer.expanded_percentiles(8)
    assert low == pytest.approx(0.574, abs=2e-3) and high == pytest.approx(100 - 0.574, abs=2e-3)
    big = transfer.expanded_percentiles(10_000)  # the plain 2.5% / 97.5% for many units
    assert big[0] == pytest.approx(2.5, abs=0.01)
    assert transfer.expanded_percentiles(1) == (0.0, 100.0)


@pytest.mark.parametrize("slope, want", [(0.0, "transfers"), (-1.0, "drifts"), (-0.6, "drifts")])
def test_a_known_slope_is_recovered(slope, want):
    x, L = _synthetic(slope)
    optima, table, verdicts = transfer.analyze(L, x, {"width": WIDTHS}, n_boot=2000)
    row = table.iloc[0]
    # the per-seed jitter 0.3 averages to 0.3 / sqrt(8) = 0.11 per width; over 4 doublings the slope's standard
    # error is about 0.11 / sqrt(10) = 0.033: the estimate lands within 0.15 and the interval holds the truth
    assert row["slope"] == pytest.approx(slope, abs=0.15)
    assert row["ci_low"] <= slope <= row["ci_high"]
    assert row["per_doubling"] == pytest.approx(2 ** row["slope"])
    assert verdicts["width"].verdict == want
    assert (optima["at_edge"] == "").all() and len(optima) == len(WIDTHS)
    np.testing.assert_allclose(
        np.log2(optima["optimum_lr"]), -7 + slope * np.log2(np.array(WIDTHS) / 32), atol=0.45
    )


def test_the_interval_covers_the_true_slope_at_the_nominal_rate():
    """200 synthetic checks at 5 seeds: the expanded-percentile interval holds the true slope about 95% of the time
    (a binomial at 95% gives 190 +- 6; at least 180 is far above the 88% the plain percentile interval covers)."""
    hits = 0
    for r in range(200):
        x, L = _synthetic(-0.7, seeds=5, seed=100 + r)
        t = transfer.analyze(L, x, {"width": WIDTHS}, n_boot=1000, seed=r)[1].iloc[0]
        hits += t["ci_low"] <= -0.7 <= t["ci_high"]
    assert hits >= 180


def test_an_edge_optimum_is_flagged_and_keeps_transfers_from_being_claimed():
    # no drift, but the widest width's optimum lies beyond the grid's top: flagged "high", and inconclusive
    x, L = _synthetic(0.0, shift={512: 6.0})
    optima, _, verdicts = transfer.analyze(L, x, {"width": WIDTHS}, n_boot=1000)
    assert optima.set_index("width").loc[512, "at_edge"] == "high"
    assert optima.set_index("width").loc[512, "best_lr"] == 2.0**-2  # the grid's last point
    v = verdicts["width"]
    assert v.verdict != "transfers"
    if v.verdict == "inconclusive":
        assert "edge" in v.reason and np.isnan(v.seeds_needed)
    # a falling optimum that runs off the bottom of the grid at the wide end: the measured drift is a lower
    # bound of the true one, so "drifts" stands, saying so
    x, L = _synthetic(-1.0, lo=-10)
    optima, _, verdicts = transfer.analyze(L, x, {"width": WIDTHS}, n_boot=1000)
    assert list(optima["at_edge"])[-2:] == ["low", "low"]
    assert verdicts["width"].verdict == "drifts" and "at least this" in verdicts["width"].reason


def test_too_few_seeds_give_inconclusive_with_the_seeds_needed():
    x, L = _synthetic(0.0, seeds=3)
    _, table, verdicts = transfer.analyze(L, x, {"width": WIDTHS}, n_boot=1000)
    v = verdicts["width"]
    assert v.verdict == "inconclusive" and v.seeds == 3
    assert f"at least {transfer.MIN_SEEDS}" in v.reason
    assert transfer.MIN_SEEDS <= v.seeds_needed < math.inf


def test_verdict_rules_and_seeds_needed_by_hand():
    v = transfer.verdict(0.05, -0.1, 0.2, tolerance=0.25, seeds=8)
    assert v.verdict == "transfers" and "at most x1.15 per doubling" in v.reason  # 2 ** 0.2
    v = transfer.verdict(-0.8, -1.0, -0.6, tolerance=0.25, seeds=8)
    assert v.verdict == "drifts" and "falls x0.574 per doubling" in v.reason  # 2 ** -0.8
    # straddles the band's edge: half-width 0.1, margin |0.2| - 0.25 = 0.05 -> 8 * (0.1 / 0.05)^2 = 32 seeds
    v = transfer.verdict(0.2, 0.1, 0.3, tolerance=0.25, seeds=8)
    assert v.verdict == "inconclusive" and v.seeds_needed == 32
    # an edge optimum that could only make a falling slope steeper keeps "drifts"; one that could flatten it not
    harmless = [(512, "low", 0.2)]  # the widest width (positive weight) could only be lower
    assert transfer.verdict(-0.8, -1.0, -0.6, seeds=8, edges=harmless).verdict == "drifts"
    harmful = [
        (32, "low", -0.2)
    ]  # the narrowest width could only be lower: the slope could be flatter
    assert transfer.verdict(-0.8, -1.0, -0.6, seeds=8, edges=harmful).verdict == "inconclusive"
    assert transfer.verdict(0.0, -0.1, 0.1, seeds=8, edges=harmless).verdict == "inconclusive"
    assert transfer.verdict(np.nan, np.nan, np.nan, seeds=8).verdict == "inconclusive"
    with pytest.raises(ValueError, match="tolerance must be > 0"):
        transfer.verdict(0.0, -0.1, 0.1, seeds=8, tolerance=0.0)


def test_analyze_fits_width_and_depth_together_and_checks_its_input():
    widths, depths = [32, 64, 32, 64], [2, 2, 8, 8]
    x = np.arange(-10.0, 0.0)
    true = {
        (w, d): -5 - 0.5 * np.log2(w / 32) - 1.0 * np.log2(d / 2)
        for w, d in zip(widths, depths, strict=True)
    }
    L = np.stack(
        [
            np.tile(0.05 * (x - true[(w, d)]) ** 2, (6, 1))
            for w, d in zip(widths, depths, strict=True)
        ]
    )
    L = L + np.random.default_rng(0).normal(0, 1e-4, L.shape)
    _, table, verdicts = transfer.analyze(L, x, {"width": widths, "depth": depths}, n_boot=500)
    slopes = table.set_index("axis")["slope"]
    assert slopes["width"] == pytest.approx(-0.5, abs=0.02) and slopes["depth"] == pytest.approx(
        -1.0, abs=0.02
    )
    assert set(verdicts) == {"width", "depth"}
    with pytest.raises(ValueError, match="no axis has two different sizes"):
        transfer.analyze(L, x, {"width": [32] * 4})
    with pytest.raises(ValueError, match=">= 3 learning rates"):
        transfer.analyze(L[:, :, :2], x[:2], {"width": widths})


# ------------------------------------------------------------------------------------------ parameterizations


def _mlp(width):
    return models.factory("mlp", hidden=(width, width))


def _resmlp(width, depth):
    return models.factory("resmlp", width=width, depth=depth, preact=True, branch_layers=1)


def test_layout_finds_inputs_readout_and_blocks_from_the_shapes():
    lay = transfer.layout(_mlp, 128, base_width=32, x=X_DIGITS)
    assert (lay.inputs, lay.readout, lay.blocks) == (("Dense_0/kernel",), "Dense_2/kernel", ())
    assert lay.params["Dense_1"]["kernel"].shape == (128, 128) and lay.base_params["Dense_1"][
        "kernel"
    ].shape == (32, 32)
    lay = transfer.layout(_resmlp, 64, 4, base_width=64, base_depth=2, x=X_DIGITS)
    assert lay.inputs == ("stem/kernel",) and lay.readout == "head/kernel"
    assert sorted(lay.blocks) == sorted(
        f"block_{i}/dense_0/{k}" for i in range(4) for k in ("bias", "kernel")
    )
    assert (
        transfer.layout(
            _resmlp, 64, 4, base_width=64, base_depth=2, x=X_DIGITS, blocks="block_*"
        ).blocks
        == lay.blocks
    )

    def tr(w):
        return models.factory("transformer", vocab=16, d_model=w, n_layers=2, n_heads=2, max_len=8)

    lay = transfer.layout(tr, 32, base_width=16, x=np.zeros((1, 8), np.float32))
    assert (
        set(lay.inputs) == {"embed/embedding", "pos_embed/embedding"}
        and lay.readout == "head/kernel"
    )
    with pytest.raises(ValueError, match="readout: nope is not a parameter"):
        transfer.layout(_mlp, 64, base_width=32, x=X_DIGITS, readout="nope")
    wide_out = lambda w: models.factory("mlp", hidden=(w, w), num_classes=w)  # noqa: E731
    with pytest.raises(ValueError, match="found 0 readout layers"):
        transfer.layout(wide_out, 64, base_width=32, x=X_DIGITS)


def test_named_parameterizations_are_their_documented_values():
    lay = transfer.layout(_mlp, 128, base_width=32, x=X_DIGITS)
    mup_mults = jinit.mup_multipliers(lay.params, lay.base_params)
    assert (
        mup_mults["Dense_1/kernel"] == mup_mults["Dense_2/kernel"] == 0.25
        and mup_mults["Dense_0/kernel"] == 1
    )
    sp, mup = transfer.parameterization("sp"), transfer.parameterization("mup")
    assert sp.init(lay) == jinit.variance_scaling(2.0, "fan_in", "normal")
    assert transfer.sp_per_layer_lr().init(lay) == sp.init(lay)  # SP's init ...
    assert (
        mup.init(lay).label
        == jinit.mup(32, readout="Dense_2/kernel", inputs=("Dense_0/kernel",)).label
    )
    grads = jax.tree.map(
        lambda s: jnp.linspace(-1.0, 1.0, math.prod(s.shape)).reshape(s.shape), lay.params
    )
    params = jax.tree.map(jnp.zeros_like, grads)

    def update(p):
        tx = p.optimizer(lay)(1e-2)
        return tx.update(grads, tx.init(params), params)[0]

    adam = optax.adam(1e-2)
    ref = adam.update(grads, adam.init(params), params)[0]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), update(sp), ref)
    per = update(transfer.sp_per_layer_lr())  # ... with muP's per-layer learning rates
    np.testing.assert_allclose(per["Dense_1"]["kernel"], 0.25 * ref["Dense_1"]["kernel"], rtol=1e-6)
    np.testing.assert_allclose(per["Dense_0"]["kernel"], ref["Dense_0"]["kernel"], rtol=1e-6)
    by_hand = transfer.Parameterization(
        "my_mup",
        lambda l: jinit.mup(l.base_width, readout=l.readout, inputs=l.inputs),  # noqa: E741
        lambda l: lambda lr: jinit.mup_optimizer(lr, l.params, l.base_params),  # noqa: E741
    )
    jax.tree.map(np.testing.assert_array_equal, update(by_hand), update(mup))
    with pytest.raises(ValueError, match="unknown parameterization 'mupp'; valid: sp, mup"):
        transfer.parameterization("mupp")
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        transfer.mup(scale=0.0)


def test_depth_mup_scales_the_blocks_learning_rates_and_branches_by_sqrt_depth():
    lay = transfer.layout(_resmlp, 64, 8, base_width=32, base_depth=2, x=X_DIGITS)
    p = transfer.depth_mup()
    assert p.branch_multiplier(lay) == pytest.approx(0.5)  # sqrt(2 / 8)
    mults = transfer.depth_multipliers(lay)
    assert mults["block_3/dense_0/kernel"] == pytest.approx(
        0.5 * 0.5
    )  # width 32/64 x depth sqrt(2/8)
    assert mults["block_3/dense_0/bias"] == pytest.approx(
        0.5
    )  # a vector: no width factor, the depth one
    assert (
        mults["head/kernel"] == pytest.approx(0.5) and mults["stem/kernel"] == 1.0
    )  # muP's, no depth
    base = transfer.layout(_resmlp, 32, 2, base_width=32, base_depth=2, x=X_DIGITS)
    assert (
        set(transfer.depth_multipliers(base).values()) == {1.0} and p.branch_multiplier(base) == 1.0
    )


def test_the_sweep_optimizer_sees_the_rules_paths():
    """The sweep hands its optimizer the variables dict ({"params": ...}); check() strips the collection, so a
    parameterization's tables are keyed by the rules' paths (Dense_0/kernel) and work on both trees."""
    lay = transfer.layout(_mlp, 64, base_width=32, x=X_DIGITS)
    grads = jax.tree.map(lambda s: jnp.ones(s.shape), lay.params)
    tx = transfer.optimizer_factory(transfer.mup(), lay)(1e-2)
    wrapped = tx.update({"params": grads}, tx.init({"params": grads}), {"params": grads})[0]
    plain = tx.update(grads, tx.init(grads), grads)[0]
    jax.tree.map(np.testing.assert_array_equal, wrapped["params"], plain)


def test_check_refuses_bad_arguments_before_compiling(compile_counter):
    lrs = (1e-3, 1e-2, 1e-1)
    cases = [
        (dict(widths=(32,)), "at least two widths"),
        (dict(widths=(32, 32)), "distinct integers"),
        (dict(widths=(32, 64), learning_rates=(1e-3, 1e-2)), "at least 3 distinct"),
        (dict(widths=(32, 64), learning_rates=(1e-3, -1.0, 1.0)), "finite numbers > 0"),
        (dict(widths=(32, 64), parameterization="spp"), "unknown parameterization"),
        (dict(widths=(32, 64), optimizer="sgd"), "optimizer must be one of adam, adamw"),
        (dict(widths=(32, 64), metric="acc"), "metric must be one of"),
        (dict(widths=(32, 64), val_fraction=None), "needs a validation set"),
        (dict(widths=(32, 64), tolerance=0), "tolerance must be"),
        (dict(widths=(32, 64), seeds=0), "seeds must be an integer"),
        (dict(widths=(32, 64), vary="all"), "vary must be one of"),
        (dict(widths=(32, 64), data=42), "data must be a dataset name"),
        (dict(widths=(32, 64), parameterization="depth_mup"), "needs a branch_multiplier field"),
    ]
    for kw, msg in cases:
        with pytest.raises((ValueError, TypeError), match=msg):
            transfer.check(_mlp, **{"learning_rates": lrs, **kw})
    assert compile_counter.count == 0


# -------------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow  # ~30 s on 2 busy CPU cores: 3 small sweeps, twice
def test_check_end_to_end_writes_its_folder_and_resumes(tmp_path):
    kw = dict(widths=(8, 16, 32), learning_rates=(2.0**-9, 2.0**-7, 2.0**-5, 2.0**-3), seeds=2, epochs=1,
              train_size=128, n_boot=200, progress=False, out=tmp_path / "t")  # fmt: skip
    result = transfer.check(_mlp, **kw)
    assert list(result.optima["width"]) == [8, 16, 32] and len(result.losses) == 3 * 4 * 2
    assert result.verdict["width"].verdict == "inconclusive"  # 2 seeds
    assert result.verdicts().columns[:6].tolist() == [
        "parameterization", "axis", "slope", "slope_ci_low", "slope_ci_high", "verdict"
    ]  # fmt: skip
    assert set(result.coords["axis"]) == {"width"} and set(result.coords["size"]) == {8, 16, 32}
    assert result.optima["lr_sensitivity"].notna().all()
    for f in (
        "optima.csv",
        "verdicts.csv",
        "losses.csv",
        "coords.csv",
        "report.md",
        "transfer.png",
    ):
        assert (tmp_path / "t" / f).is_file(), f
    assert sorted(p.name for p in (tmp_path / "t").glob("w*")) == ["w16", "w32", "w8"]
    assert "## Slopes" in (tmp_path / "t" / "report.md").read_text()
    t0 = time.perf_counter()
    again = transfer.check(
        _mlp, **{**kw, "coords": False}
    )  # every shape complete: read back, not trained
    assert time.perf_counter() - t0 < 60
    pd.testing.assert_frame_equal(again.losses, result.losses)
    assert again.coords is None
    back = transfer.load(
        tmp_path / "t"
    )  # the folder alone: the same statistics, the saved coordinates
    pd.testing.assert_frame_equal(back.optima, result.optima)
    assert back.verdict == result.verdict and len(back.coords) == len(result.coords)
    with pytest.raises(ValueError, match="holds no transfer check"):
        transfer.load(tmp_path)


@pytest.mark.slow  # ~20 s: two residual depths under depth_mup
def test_check_along_depth_with_depth_mup():
    result = transfer.check(
        _resmlp, widths=(16,), depths=(1, 4), learning_rates=(1e-3, 1e-2, 1e-1), parameterization="depth_mup",
        seeds=2, epochs=1, train_size=128, n_boot=200, progress=False, coords=False, metric="train_loss",
        val_fraction=None,
    )  # fmt: skip
    assert list(result.verdict) == ["depth"] and list(result.optima["depth"]) == [1, 4]
    # the optimum on the last epoch's training loss; the sensitivity falls back to the test loss (no validation)
    last = (
        result.runs[(16, 4)].curves.sort_values("step").groupby(["learning_rate", "seed"]).tail(1)
    )
    rows = result.losses[result.losses["depth"] == 4].merge(last, on=["learning_rate", "seed"])
    np.testing.assert_allclose(rows["loss"], rows["train_loss"])
    assert result.optima["lr_sensitivity"].notna().all()
    assert result.verdict["depth"].verdict == "inconclusive" and len(result.losses) == 2 * 3 * 2


@pytest.mark.slow  # a process: ~25 s of CPU (under a minute of wall time on an idle 2-core machine)
def test_cli_transfer_smoke():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from jinit.cli import main; sys.exit(main())", "transfer", "--smoke",
         "--no-progress"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "width: inconclusive -- 2 seeds" in out.stdout and "not a result" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-c", "import sys; from jinit.cli import main; sys.exit(main())", "transfer", "--widths",
         "32", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "jinit transfer: error: give at least two widths" in bad.stderr


def test_data_loaded_for_the_shapes_is_the_sweeps():
    """check() finds the shapes on the dataset's own inputs (digits: 8x8x1 images, 64 features)."""
    ds = data.load("digits")
    lay = transfer.layout(_mlp, 64, base_width=32, x=ds.x_train[:1])
    assert lay.params["Dense_0"]["kernel"].shape == (64, 64)


def test_coord_growth_compares_the_layers_every_size_has():
    rows = [
        ("depth", 2, 0, 3, "stem_out", 1.0, 0.5),
        ("depth", 8, 0, 3, "stem_out", 2.0, 2.0),
        ("depth", 2, 0, 3, "output", 1.0, 1.0),
        ("depth", 8, 0, 3, "output", 3.0, 4.0),
        ("depth", 8, 0, 3, "block_7_out", 9.0, 9.0),  # only the deeper network has it: not compared
        ("depth", 2, 0, 0, "output", 5.0, 0.0),  # t = 0: not the last step
    ]
    coords = pd.DataFrame(rows, columns=["axis", "size", "seed", "t", "layer", "l1", "delta"])
    res = transfer.TransferResult("x", None, None, {}, coords, {}, None, {})
    g = res.coord_growth().set_index("layer")
    assert list(g.index) == ["stem_out", "output"]
    assert g.loc["stem_out", "delta_growth"] == 4.0 and g.loc["output", "l1_growth"] == 3.0
    assert g.loc["output", "sizes"] == "2 -> 8"
