"""Benchmark: jinit's sweep against what a user would otherwise write, and against the hardware.

On the MNIST MLP (784-128-64-10 ReLU, Adam 1e-3, full MNIST, one epoch, one test-set evaluation at its end) for N
models, measured in one process on the same data:

* ``jinit``: :func:`jinit.sweep.run` (all N models in one compiled, vmapped program; compile time apart);
* ``naive``: the loop a Flax user writes: for each model, a ``jax.jit``-ed single-model train step called from
  Python for every batch, the batch sliced from host numpy arrays;
* ``scan_loop``: a Python loop over models of a ``lax.scan``-compiled single-model epoch (jinit's own
  :func:`jinit.train.make_train` epoch, data on the device): the best one can do without ``vmap``;
* ``torch_func`` (when PyTorch is installed; it is not a dependency): the ``torch.func`` model-ensembling recipe
  (``stack_module_state`` + ``vmap(grad(functional_call))`` + ``torch.optim.Adam`` on the stacked parameters);
* ``torch_loop`` (when PyTorch is installed): a plain PyTorch training loop per model.

Precision (``--precisions``): jinit's sweep at float32 (the default), with Adam's moments stored in bfloat16
(``bf16_state``), with bfloat16 activations and matmuls too (``bf16_compute_state``), or bfloat16 compute alone
(``bf16_compute``): ``SweepConfig.compute_dtype`` / ``state_dtype``. Each precision's row has its own FLOPs and
bytes per step (XLA's cost analysis of its compiled single-model step), its own least state traffic (parameters
float32, moments in the state dtype) and its own peak (a bfloat16 matmul for bfloat16 compute), so its share of the
memory roofline is recomputed for that dtype. The other methods run in float32 only.

The sequential methods (``naive``, ``scan_loop``, ``torch_loop``) train one model after another, so their time is
exactly linear in N: they are timed on ``min(N, --sequential-models)`` models and their rate is reported per model
(the JSON says how many models were timed). Every method does the same work per model: one epoch of
``n_train // batch`` Adam steps plus one evaluation of the test set.

FLOPs are XLA's cost analysis of the compiled single-model train step (times the steps of an epoch) plus that of
the test-set evaluation, the same count for every method. The hardware limit is a large matmul timed in the same
run at the same (default) precision: full float32 on CPU; on NVIDIA Ampere/Hopper GPUs JAX's default precision
for float32 matmuls is TF32 (the sweep's matmuls run the same way, and PyTorch is set to TF32 too). The other limit
is memory: a memory bandwidth timed in the same run (``y = x + 1`` on a large array) and the least traffic of an
Adam step, its parameters and both moments read and written once (:func:`state_bytes_per_model_step`), give the
memory roofline ``min(peak, FLOPs / bytes x bandwidth)`` that no implementation keeping float32 Adam state in memory
can pass. On a GPU PyTorch runs on the same GPU as JAX. Results go to
``experiments/results/benchmark/benchmark_<platform>.json`` (one file per platform, so CPU and GPU results sit side
by side), ``report.md`` and ``throughput.png``.

Usage::

    python experiments/benchmark.py                      # CPU defaults: N = 1, 8, 64, 256; batch 32 and 128
    python experiments/benchmark.py --ns 1,8,64,256,1024,4096,8192   # on an accelerator (the default there)
    python experiments/benchmark.py --smoke --out /tmp/b  # seconds, on the embedded digits dataset
    python experiments/benchmark.py --batch-sizes 32 --merge  # one batch size per command, into one JSON
    python experiments/benchmark.py --methods jinit --precisions float32,bf16_state,bf16_compute_state \
        --ns 1024,2048,4096,8192 --out experiments/results/benchmark/precision   # the precision benchmark (GPU)
"""

from __future__ import annotations

import copy
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import _common as C
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

import jinit
from jinit import data as data_lib
from jinit import files, models, sweep, train

NAME = "benchmark"
METHODS = ("jinit", "naive", "scan_loop", "torch_func", "torch_loop")
SEQUENTIAL = ("naive", "scan_loop", "torch_loop")
HIDDEN = (128, 64)
LR = 1e-3
#: jinit's precisions (``--precisions``): name -> (compute dtype, state dtype) of the sweep.
PRECISIONS = {
    "float32": ("float32", "float32"),
    "bf16_state": ("float32", "bfloat16"),
    "bf16_compute_state": ("bfloat16", "bfloat16"),
    "bf16_compute": ("bfloat16", "float32"),
}
#: The share of its memory roofline each precision aims at on a GPU (issue 26).
ROOFLINE_GOAL = 0.85
#: The goals of the benchmark issue, as (platform, description, check on the rows).
GOAL_N = {"cpu": 64, "gpu": 1024}
WALL_GOAL_N = {"cpu": 1024, "gpu": 8192}


# ------------------------------------------------------------------------------------------ the hardware


def _best_seconds(fn, *args, reps: int) -> float:
    """The fastest of ``reps`` timed calls of ``jax.jit(fn)(*args)``, compiled and warmed up first."""
    f = jax.jit(fn).lower(*args).compile()
    f(*args).block_until_ready()
    best = np.inf
    for _ in range(reps):
        t = time.perf_counter()
        f(*args).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_peak(n: int, reps: int = 5, dtype: Any = jnp.float32) -> dict[str, Any]:
    """FLOP/s of an ``n x n`` matmul in ``dtype`` (float32: at JAX's default precision; best of ``reps`` timed
    calls)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    best = _best_seconds(jnp.matmul, a, b, reps=reps)
    return {"n": n, "seconds": best, "flops_per_s": 2 * n**3 / best, "dtype": jnp.dtype(dtype).name}


def memory_bandwidth(n_bytes: int, reps: int = 5) -> dict[str, Any]:
    """Bytes per second the device's memory moves: ``y = x + 1`` on an ``n_bytes`` float32 array (read once,
    written once; best of ``reps`` timed calls)."""
    x = jnp.zeros((n_bytes // 4,), jnp.float32)
    best = _best_seconds(lambda a: a + 1, x, reps=reps)
    return {"bytes": n_bytes, "seconds": best, "bytes_per_s": 2 * n_bytes / best}


def precision_note(device) -> str:
    """What precision float32 matmuls run at, in words."""
    if device.platform == "gpu":
        kind = device.device_kind
        return (
            f"float32 storage; matmuls at JAX's default precision, which is TF32 on tensor cores of NVIDIA "
            f"Ampere and newer GPUs ({kind})"
        )
    if device.platform == "tpu":
        return "float32 storage; matmuls at JAX's default precision (bfloat16 passes on TPU)"
    return "float32 storage and float32 matmuls (CPU)"


# ------------------------------------------------------------------------------------------ shared pieces


def _mlp(compute_dtype: str = "float32"):
    dtype = None if compute_dtype == "float32" else jnp.dtype(compute_dtype)
    return models.MLP(
        hidden=HIDDEN, num_classes=10, kernel_init=jinit.glorot_uniform(), dtype=dtype
    )


def _adam(state_dtype: str = "float32"):
    return train.named_optimizer("adam", LR, state_dtype)


def flops_per_model_epoch(
    x_train, x_test, batch_size: int, precision: str = "float32"
) -> dict[str, float]:
    """XLA's FLOP count of one model's epoch: ``steps x`` (compiled train step) ``+`` (compiled evaluation), and
    the bytes its compiled step accesses (XLA's cost analysis), at ``precision`` (:data:`PRECISIONS`)."""
    compute, state = PRECISIONS[precision]
    model = _mlp(compute)
    tx = _adam(state)
    steps = x_train.shape[0] // batch_size
    trainer = train.make_train(
        model.apply,
        tx,
        batch_size=batch_size,
        steps_per_epoch=steps,
        eval_batch_size=x_test.shape[0],
    )
    params = model.init(jax.random.key(0), jnp.zeros((1, x_train.shape[1])))
    state = trainer.init(params)
    xb = jax.ShapeDtypeStruct((batch_size, x_train.shape[1]), jnp.float32)
    yb = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    step = jax.jit(trainer.step).lower(state, xb, yb).compile()
    xt = jax.ShapeDtypeStruct(x_test.shape, jnp.float32)
    yt = jax.ShapeDtypeStruct((x_test.shape[0],), jnp.int32)
    ev = jax.jit(trainer.evaluate).lower(params, xt, yt).compile()

    def cost(c, key):
        ca = c.cost_analysis()
        ca = ca[0] if isinstance(ca, list | tuple) else ca
        return float(ca.get(key, np.nan))

    step_flops, eval_flops = cost(step, "flops"), cost(ev, "flops")
    return {
        "step_flops": step_flops,
        "eval_flops": eval_flops,
        "steps": steps,
        "total": steps * step_flops + eval_flops,
        "step_bytes_accessed": cost(step, "bytes accessed"),
    }


def state_bytes_per_model_step(in_features: int = 784, precision: str = "float32") -> int:
    """The least memory traffic of one model's Adam step once the stacked training state no longer fits in a
    cache: its parameters and both moments read once and written once, ``2 x (params + optimizer state)``
    bytes (the gradient, the batch and the activations not even counted), the moments in the state dtype of
    ``precision``. With the step's FLOPs this bounds the FLOP/s any implementation that keeps its Adam state in
    memory in that dtype can reach: ``FLOPs / bytes x bandwidth`` (the memory roofline)."""
    compute, state = PRECISIONS[precision]
    model, tx = _mlp(compute), _adam(state)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, in_features)))
    nbytes = sum(
        int(np.prod(a.shape)) * a.dtype.itemsize
        for a in jax.tree.leaves((params, jax.eval_shape(tx.init, params)))
    )
    return 2 * nbytes


def _order(n_train: int, batch_size: int, seed: int = 0) -> np.ndarray:
    """One shared data order (as jinit's default ``vary="init"``): [steps, batch] indices."""
    steps = n_train // batch_size
    perm = np.random.default_rng(seed).permutation(n_train)
    return perm[: steps * batch_size].reshape(steps, batch_size)


# ------------------------------------------------------------------------------------------ the methods


def run_jinit(args, n_models: int, batch_size: int, precision: str = "float32") -> dict[str, Any]:
    """``jinit.sweep.run`` of ``n_models`` seeds of one scheme (the work does not depend on the scheme), at
    ``precision`` (:data:`PRECISIONS`)."""
    compute, state = PRECISIONS[precision]
    cfg = sweep.SweepConfig(
        compute_dtype=compute,
        state_dtype=state,
        dataset=args.dataset,
        data_dir=args.data_dir,
        hidden=HIDDEN,
        schemes=("glorot_uniform",),
        seeds=n_models,
        epochs=1,
        batch_size=batch_size,
        learning_rate=LR,
        train_size=args.train_size,
        test_size=args.test_size,
        eval_batch_size=min(1000, args.test_size or 10_000),
    )
    r = sweep.run(cfg, progress=False)
    m = r.meta
    mem = m.get("epoch_program_bytes") or {}
    per_model = None
    if mem:
        data_bytes = 4 * (m["n_train"] + m["n_test"]) * (1 + int(np.prod(args.input_shape)))
        total = mem["argument"] + mem["output"] + mem["temp"] - mem["alias"]
        per_model = max(total - data_bytes, 0) / m["models_per_device"]  # one device's program
    return {
        "seconds": m["train_seconds"],
        "compile_seconds": m["compile_seconds"],
        # the whole sweep.run: data, initialization, compile, training
        "wall_seconds": m["wall_seconds"],
        "timed_models": n_models,
        "chunk_size": m["chunk_size"],
        "models_per_device": m["models_per_device"],
        "n_chunks": m["n_chunks"],
        "bytes_per_model": per_model,
        "mean_accuracy": float(r.models["final_accuracy"].mean()),
    }


def run_naive(ds, n_models: int, batch_size: int) -> dict[str, Any]:
    """Per model: a jitted single-model step called from Python for every batch (sliced on the host)."""
    model = _mlp()
    tx = optax.adam(LR)

    @jax.jit
    def train_step(params, opt_state, x, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def accuracy(params, x, y):
        return jnp.mean(jnp.argmax(model.apply(params, x), -1) == y)

    order = _order(ds.x_train.shape[0], batch_size)
    x, y = ds.x_train, ds.y_train

    def one(key):
        params = model.init(key, x[:1])
        opt_state = tx.init(params)
        for idx in order:
            params, opt_state, _ = train_step(params, opt_state, x[idx], y[idx])
        return float(accuracy(params, ds.x_test, ds.y_test))

    return _time_sequential(
        one, jax.random.key(10**6), [jax.random.key(i) for i in range(n_models)]
    )


def run_scan_loop(ds, n_models: int, batch_size: int) -> dict[str, Any]:
    """Per model: jinit's single-model ``lax.scan`` epoch, jitted once, data on the device."""
    model = _mlp()
    tx = optax.adam(LR)
    steps = ds.x_train.shape[0] // batch_size
    trainer = train.make_train(
        model.apply,
        tx,
        batch_size=batch_size,
        steps_per_epoch=steps,
        eval_batch_size=ds.x_test.shape[0],
    )
    epoch = jax.jit(trainer.epoch)
    dev = jax.device_put((ds.x_train, ds.y_train, ds.x_test, ds.y_test))
    data_key, drop_key = jax.random.key(1), jax.random.key(2)

    def one(key):
        state = trainer.init(model.init(key, ds.x_train[:1]))
        state, logs = epoch(state, data_key, drop_key, 0, *dev)
        return float(logs.test_accuracy[-1])

    return _time_sequential(
        one, jax.random.key(10**6), [jax.random.key(i) for i in range(n_models)]
    )


def _torch_mlp(torch, in_features: int):
    nn = torch.nn
    return nn.Sequential(
        nn.Linear(in_features, HIDDEN[0]),
        nn.ReLU(),
        nn.Linear(HIDDEN[0], HIDDEN[1]),
        nn.ReLU(),
        nn.Linear(HIDDEN[1], 10),
    )


def _torch_device(torch) -> str:
    """``"cuda"`` when JAX runs on a GPU and PyTorch sees one too (the same GPU for both), else ``"cpu"``."""
    return "cuda" if jax.devices()[0].platform == "gpu" and torch.cuda.is_available() else "cpu"


def _torch_data(torch, ds):
    dev = _torch_device(torch)
    return tuple(
        torch.from_numpy(np.array(a, copy=True)).to(dev)
        for a in (ds.x_train, ds.y_train.astype(np.int64), ds.x_test, ds.y_test.astype(np.int64))
    )


def _torch_order(torch, n_train: int, batch_size: int):
    return torch.from_numpy(_order(n_train, batch_size)).to(_torch_device(torch))


def run_torch_func(ds, n_models: int, batch_size: int) -> dict[str, Any]:
    """The torch.func ensembling recipe: stacked parameters, ``vmap(grad(functional_call))``, Adam on the stack."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, grad, stack_module_state, vmap

    torch.manual_seed(0)
    dev = _torch_device(torch)
    x, y, xt, yt = _torch_data(torch, ds)
    order = _torch_order(torch, ds.x_train.shape[0], batch_size)
    base = copy.deepcopy(_torch_mlp(torch, x.shape[1])).to("meta")

    def loss(p, b, xb, yb):
        return F.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    grads_fn = vmap(grad(loss), in_dims=(0, 0, None, None))
    logits_fn = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)), in_dims=(0, 0, None))

    def run(n, steps):
        params, buffers = stack_module_state(
            [_torch_mlp(torch, x.shape[1]).to(dev) for _ in range(n)]
        )
        opt = torch.optim.Adam(list(params.values()), lr=LR)
        for idx in order[:steps]:
            g = grads_fn(params, buffers, x[idx], y[idx])
            for k, v in params.items():
                v.grad = g[k]
            opt.step()
        # The test set in slices of 1000, as jinit evaluates: logits of all at once would need N x 10000 x 128
        # floats.
        with torch.no_grad():
            correct = sum(
                (logits_fn(params, buffers, xt[i : i + 1000]).argmax(-1) == yt[i : i + 1000]).sum(
                    -1
                )
                for i in range(0, len(xt), 1000)
            )
            return (correct / len(xt)).tolist()

    t = time.perf_counter()
    run(n_models, 3)  # warm up
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    accs = run(n_models, len(order))
    return {
        "seconds": time.perf_counter() - t,
        "compile_seconds": compile_s,
        "timed_models": n_models,
        "mean_accuracy": float(np.mean(accs)),
    }


def run_torch_loop(ds, n_models: int, batch_size: int) -> dict[str, Any]:
    """A plain PyTorch loop per model (forward, backward, Adam step)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    x, y, xt, yt = _torch_data(torch, ds)
    order = _torch_order(torch, ds.x_train.shape[0], batch_size)

    def one(steps):
        net = _torch_mlp(torch, x.shape[1]).to(_torch_device(torch))
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        for idx in order[:steps]:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
        with torch.no_grad():
            return float((net(xt).argmax(-1) == yt).float().mean())

    return _time_sequential(one, 3, [len(order)] * n_models)


def _time_sequential(one, warmup: Any, calls: list[Any]) -> dict[str, Any]:
    """Times a sequential method: ``one(warmup)`` compiles and warms up outside the timing, then ``one(arg)``
    trains one model per ``arg`` of ``calls`` (each returns its test accuracy)."""
    t = time.perf_counter()
    one(warmup)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    accs = [one(arg) for arg in calls]
    return {
        "seconds": time.perf_counter() - t,
        "compile_seconds": compile_s,
        "timed_models": len(calls),
        "mean_accuracy": float(np.mean(accs)),
    }


def _runs(methods: list[str], precisions: list[str]) -> list[tuple[str, str]]:
    """``(method, precision)`` pairs: jinit at every precision, the other methods in float32."""
    out = []
    for m in methods:
        out += [(m, p) for p in precisions] if m == "jinit" else [(m, "float32")]
    return out


RUNNERS = {
    "naive": run_naive,
    "scan_loop": run_scan_loop,
    "torch_func": run_torch_func,
    "torch_loop": run_torch_loop,
}


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    # JAX's default precision for float32 matmuls on NVIDIA Ampere and newer is TF32; PyTorch's is full
    # float32. Compare like with like: TF32 for both (see torch_precision()).
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return torch.__version__


def torch_precision() -> str | None:
    """What precision PyTorch's float32 matmuls run at here, in words (None without PyTorch)."""
    try:
        import torch
    except ImportError:
        return None
    if _torch_device(torch) == "cuda":
        return f"TF32 matmuls on {torch.cuda.get_device_name()} (allow_tf32, as JAX's default)"
    return "float32 matmuls (CPU)"


# ------------------------------------------------------------------------------------------ the run


def best_of(fn, repeats: int) -> dict[str, Any]:
    """Runs ``fn()`` ``repeats`` times; the fastest run, with the first run's compile time and every run's time.

    A repeat of a jinit sweep is the same config again in the same process: it must compile nothing
    (``repeat_compile_seconds`` all 0)."""
    runs = [fn() for _ in range(repeats)]
    best = min(runs, key=lambda r: r["seconds"])
    return {
        **best,
        "compile_seconds": runs[0]["compile_seconds"],
        # what a user waits for: the first run, compile included
        "first_seconds": runs[0]["seconds"],
        "first_wall_seconds": runs[0].get("wall_seconds"),
        "repeat_seconds": [r["seconds"] for r in runs],
        "repeat_compile_seconds": [r["compile_seconds"] for r in runs[1:]],
    }


def measure(args) -> dict[str, Any]:
    device = jax.devices()[0]
    sub = data_lib.load(
        args.dataset,
        data_dir=args.data_dir,
        flatten=True,
        num_train=args.train_size,
        num_test=args.test_size,
    )
    args.input_shape = sub.input_shape
    torch_v = torch_version()
    methods = [m for m in args.methods if not (m.startswith("torch") and torch_v is None)]
    peak = matmul_peak(args.peak_n)
    bf16_compute = any(PRECISIONS[p][0] == "bfloat16" for p in args.precisions)
    peak_bf16 = matmul_peak(args.peak_n, dtype=jnp.bfloat16) if bf16_compute else None
    bw = memory_bandwidth(args.bandwidth_bytes)
    print(
        f"matmul peak: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s ({args.peak_n}x{args.peak_n} float32); "
        f"memory: {bw['bytes_per_s'] / 1e9:.1f} GB/s",
        flush=True,
    )
    rows = []
    # A sequential method's rate does not depend on N (one model after another): it is timed once per batch
    # size on min(N, --sequential-models) models, and that measurement serves every larger N.
    sequential: dict[tuple[str, int, int], dict[str, Any]] = {}
    in_features = int(np.prod(sub.input_shape))
    for bs in args.batch_sizes:
        fls = {
            p: flops_per_model_epoch(sub.x_train, sub.x_test, bs, p)
            for p in dict.fromkeys(["float32", *args.precisions])
        }
        for n in args.ns:
            for method, prec in _runs(methods, args.precisions):
                if method == "torch_func" and n > args.torch_func_max:
                    continue
                fl = fls[prec]
                pk = peak_bf16 if PRECISIONS[prec][0] == "bfloat16" else peak
                timed = min(n, args.sequential_models) if method in SEQUENTIAL else n
                if method == "jinit":
                    r = best_of(
                        lambda n=n, bs=bs, prec=prec: run_jinit(args, n, bs, prec), args.repeats
                    )
                elif method in SEQUENTIAL:
                    if (method, bs, timed) not in sequential:
                        sequential[method, bs, timed] = RUNNERS[method](sub, timed, bs)
                    r = sequential[method, bs, timed]
                else:
                    r = best_of(lambda m=method, n=n, bs=bs: RUNNERS[m](sub, n, bs), args.repeats)
                rate = r["timed_models"] / r["seconds"]
                row = {
                    "method": method,
                    "precision": prec,
                    "batch_size": bs,
                    "n_models": n,
                    **r,
                    "model_epochs_per_s": rate,
                    "flops_per_model_epoch": fl["total"],
                    "flops_per_s": rate * fl["total"],
                    "fraction_of_peak": rate * fl["total"] / pk["flops_per_s"],
                    "peak_flops_per_s": pk["flops_per_s"],
                    "state_bytes_per_model_step": state_bytes_per_model_step(in_features, prec),
                    "xla_bytes_per_model_step": fl["step_bytes_accessed"],
                }
                rows.append(row)
                print(
                    f"  batch {bs:4d} N {n:5d} {method:<10s} {prec:<18s} {rate:9.3f} model-epochs/s "
                    f"({row['flops_per_s'] / 1e9:6.1f} GFLOP/s, {100 * row['fraction_of_peak']:5.1f}% of peak; "
                    f"timed {r['timed_models']} model(s) in {r['seconds']:.2f} s, compile {r['compile_seconds']:.2f} s)",
                    flush=True,
                )
    return {
        "device": {
            "platform": device.platform,
            "device_kind": device.device_kind,
            "device_count": jax.device_count(),
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "precision": precision_note(device),
        "torch_precision": torch_precision() if torch_v else None,
        "versions": {
            "jax": jax.__version__,
            "flax": _version("flax"),
            "optax": _version("optax"),
            "torch": torch_v,
            "python": sys.version.split()[0],
        },
        "dataset": args.dataset,
        "n_train": int(sub.x_train.shape[0]),
        "n_test": int(sub.x_test.shape[0]),
        "model": f"MLP 784-{'-'.join(map(str, HIDDEN))}-10 ReLU, Adam {LR:g}, one epoch + one test evaluation",
        "sequential_models": args.sequential_models,
        "matmul_peak": peak,
        "matmul_peak_bfloat16": peak_bf16,
        "memory_bandwidth": bw,
        "state_bytes_per_model_step": state_bytes_per_model_step(in_features),
        "precisions": list(args.precisions),
        "repeats": args.repeats,
        "rows": rows,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the rows of ``old`` for the (batch size, method) pairs ``new`` did not measure (``--merge``).

    Each row keeps the matmul peak it was measured against; the document's peak and bandwidth are the newest.

    Raises:
      ValueError: when the two were measured on different kinds of device.
    """
    if old["device"]["device_kind"] != new["device"]["device_kind"]:
        raise ValueError(
            f"--merge: the JSON holds {old['device']['device_kind']!r} results, this run is on "
            f"{new['device']['device_kind']!r}; use another --out"
        )
    done = {(r["batch_size"], r["method"], r.get("precision", "float32")) for r in new["rows"]}
    kept = [
        r
        for r in old["rows"]
        if (r["batch_size"], r["method"], r.get("precision", "float32")) not in done
    ]
    rows = sorted(
        kept + new["rows"],
        key=lambda r: (
            r["batch_size"],
            r["n_models"],
            METHODS.index(r["method"]),
            list(PRECISIONS).index(r.get("precision", "float32")),
        ),
    )
    merged_from = [*old.get("merged_from", [old["created"]]), new["created"]]
    commands = [*old.get("commands", []), *new.get("commands", [])]
    return {**new, "rows": rows, "merged_from": merged_from, "commands": commands}


# ------------------------------------------------------------------------------------------ the report


def table(doc: dict[str, Any]) -> pd.DataFrame:
    """One row per (batch, N, method, precision) with the speedup of float32 jinit over the method."""
    df = pd.DataFrame(doc["rows"])
    if "precision" not in df:  # a JSON from before the precision rows: float32
        df["precision"] = "float32"
    df["precision"] = df["precision"].fillna("float32")
    f32 = df[(df["method"] == "jinit") & (df["precision"] == "float32")]
    jin = f32.set_index(["batch_size", "n_models"])["model_epochs_per_s"]
    df["jinit_speedup"] = [
        jin.get((b, n), np.nan) / r
        for b, n, r in zip(df["batch_size"], df["n_models"], df["model_epochs_per_s"], strict=True)
    ]
    # The whole sweep.run (data, init, compile, training, hashes, tables) over its training time, first run.
    if "first_wall_seconds" in df:
        df["wall_per_train"] = df["first_wall_seconds"].astype(float) / df["first_seconds"].astype(
            float
        )
    # The memory roofline, on accelerators: there the stacked state of a chunk (GBs) streams from device memory
    # at every step. A CPU sweep sizes its chunks to keep that state in the last-level cache (see
    # jinit.sweep.chunk_size), so a DRAM bound does not apply (the CPU's `y = x + 1` is also single-threaded).
    if doc["device"]["platform"] != "cpu" and "state_bytes_per_model_step" in doc:
        # each row's own state traffic (its precision's moments), else the document's (float32)
        state = df.get("state_bytes_per_model_step", pd.Series(np.nan, index=df.index))
        state = state.fillna(doc["state_bytes_per_model_step"]).astype(float)
        bytes_epoch = (doc["n_train"] // df["batch_size"]) * state
        bound = df["flops_per_model_epoch"] / bytes_epoch * doc["memory_bandwidth"]["bytes_per_s"]
        df["roofline_flops_per_s"] = np.minimum(df["peak_flops_per_s"], bound)
        df["fraction_of_roofline"] = df["flops_per_s"] / df["roofline_flops_per_s"]
    return df


def goals(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, checked on the measured rows (only those this platform's run can decide)."""
    full = table(doc)
    df = full[full["precision"] == "float32"]  # the goals of the float32 benchmark
    plat = "gpu" if doc["device"]["platform"] == "gpu" else "cpu"
    out = []

    def at(method, n, bs, col):
        sel = df[(df["method"] == method) & (df["n_models"] == n) & (df["batch_size"] == bs)]
        return float(sel[col].iloc[0]) if len(sel) else np.nan

    def add(goal, value, ok):
        out.append({"goal": goal, "measured": value, "met": None if value == "-" else bool(ok)})

    if plat == "cpu":
        n, bs = GOAL_N["cpu"], 128
        s = at("naive", n, bs, "jinit_speedup")
        add(f"jinit >= 1.8x naive Flax loop (N={n}, batch {bs})", _x(s), s >= 1.8)
        s = at("torch_func", n, bs, "jinit_speedup")
        add(f"jinit >= 2x torch.func (N={n}, batch {bs})", _x(s), s >= 2.0)
        f = at("jinit", n, bs, "fraction_of_peak")
        add(f"jinit >= 80% of the matmul peak (N={n}, batch {bs})", _p(f), f >= 0.8)
    else:
        n = GOAL_N["gpu"]
        for bs in sorted(set(df["batch_size"])):
            s = at("naive", n, bs, "jinit_speedup")
            add(f"jinit >= 100x naive loop (N={n}, batch {bs})", _x(s), s >= 100)
            f = at("jinit", n, bs, "fraction_of_peak")
            add(f"jinit >= 40% of the TF32 matmul peak (N={n}, batch {bs})", _p(f), f >= 0.4)
            big = df[(df["method"] == "jinit") & (df["batch_size"] == bs) & (df["n_models"] >= n)]
            big = big.sort_values("n_models")
            if len(big) >= 2:
                r = big["model_epochs_per_s"].to_numpy()
                ratio = r[-1] / r[0]
                add(
                    f"throughput flat or rising from N={big['n_models'].iloc[0]} to N={big['n_models'].iloc[-1]} "
                    f"(batch {bs})",
                    f"{ratio:.2f}x",
                    ratio >= 0.95,
                )
    if "roofline_flops_per_s" in df:  # context for the peak goals: what the memory traffic allows
        n = GOAL_N[plat]
        for bs in sorted(set(df["batch_size"])):
            roof, pk = (
                at("jinit", n, bs, "roofline_flops_per_s"),
                at("jinit", n, bs, "peak_flops_per_s"),
            )
            f = at("jinit", n, bs, "fraction_of_roofline")
            if np.isfinite(roof):
                out.append(
                    {
                        "goal": f"(a bound, not a goal) memory roofline min(peak, FLOPs / state bytes x "
                        f"bandwidth) as a share of the peak; jinit's share of that roofline (N={n}, batch {bs})",
                        "measured": f"{_p(roof / pk)}; {_p(f)}",
                        "met": None,
                    }
                )
    out += _precision_goals(full, plat)
    jit = df[df["method"] == "jinit"]
    if "wall_per_train" in jit:
        n_wall = WALL_GOAL_N[plat]
        big = jit[(jit["n_models"] >= n_wall) & jit["wall_per_train"].notna()]
        w = float(big["wall_per_train"].max()) if len(big) else np.nan
        add(
            f"whole sweep.run <= 1.25x its training time (N >= {n_wall}, every batch size, first run)",
            "-" if not np.isfinite(w) else f"{w:.2f}x",
            w <= 1.25,
        )
    c = float(jit["compile_seconds"].max()) if len(jit) else np.nan
    add("compile time of a sweep < 10 s (max over runs)", f"{c:.2f} s", c < 10)
    again = [c for cs in jit.get("repeat_compile_seconds", pd.Series([], dtype=object)) for c in cs]
    if again:
        add(
            "a second run of the same config in the same process does not recompile",
            f"{max(again):.3f} s compiling (max over {len(again)} repeats)",
            max(again) == 0,
        )
    return out


def _precision_goals(df: pd.DataFrame, plat: str) -> list[dict[str, Any]]:
    """Per precision other than float32 (``--precisions``): on an accelerator, jinit's share of that precision's
    memory roofline at its largest N for each batch size (the goal: :data:`ROOFLINE_GOAL`); on a CPU, where no
    roofline applies, nothing."""
    out = []
    rows = df[(df["method"] == "jinit") & (df["precision"] != "float32")]
    if plat == "cpu" or "fraction_of_roofline" not in df or rows.empty:
        return out
    for (prec, bs), g in rows.groupby(["precision", "batch_size"], sort=False):
        r = g.sort_values("n_models").iloc[-1]
        f = float(r["fraction_of_roofline"])
        out.append(
            {
                "goal": f"jinit {prec} >= {ROOFLINE_GOAL:.0%} of its memory roofline (N={int(r['n_models'])}, "
                f"batch {bs})",
                "measured": _p(f),
                "met": bool(f >= ROOFLINE_GOAL) if np.isfinite(f) else None,
            }
        )
    return out


def _x(v: float) -> str:
    return "-" if not np.isfinite(v) else f"{v:.2f}x"


def _p(v: float) -> str:
    return "-" if not np.isfinite(v) else f"{100 * v:.1f}%"


def markdown(doc: dict[str, Any]) -> str:
    df = table(doc)
    d = doc["device"]
    head = (
        f"### {d['platform'].upper()}: {d['device_count']} x {d['device_kind']} ({d['cpu_count']} CPU cores)\n\n"
        f"{doc['model']}; {doc['dataset']} ({doc['n_train']} train / {doc['n_test']} test). {doc['precision']}. "
        f"Measured matmul peak: **{doc['matmul_peak']['flops_per_s'] / 1e9:.1f} GFLOP/s** "
        f"({doc['matmul_peak']['n']}² float32)"
        + (
            f", bfloat16 matmul peak **{doc['matmul_peak_bfloat16']['flops_per_s'] / 1e9:.1f} GFLOP/s** (the peak of "
            "the rows with bfloat16 compute)"
            if doc.get("matmul_peak_bfloat16")
            else ""
        )
        + (
            f"; measured memory bandwidth **{doc['memory_bandwidth']['bytes_per_s'] / 1e9:.0f} GB/s** "
            f"(y = x + 1 on {doc['memory_bandwidth']['bytes'] >> 20} MiB)"
            if "memory_bandwidth" in doc and d["platform"] != "cpu"
            else ""
        )
        + (f". PyTorch: {doc['torch_precision']}" if doc.get("torch_precision") else "")
        + f". jax {doc['versions']['jax']}, torch {doc['versions']['torch'] or 'not installed'}; "
        f"{doc['created']}. jinit and torch_func: the fastest of {doc.get('repeats', 1)} run(s) per point; "
        f"sequential methods timed on up to {doc['sequential_models']} models."
    )
    show = df.assign(
        **{
            "model-epochs/s": df["model_epochs_per_s"].map(lambda v: f"{v:.3g}"),
            "GFLOP/s": (df["flops_per_s"] / 1e9).map(lambda v: f"{v:.1f}"),
            "% of peak": (100 * df["fraction_of_peak"]).map(lambda v: f"{v:.1f}"),
            "% of roofline": (
                100 * df.get("fraction_of_roofline", np.nan * df["fraction_of_peak"])
            ).map(lambda v: "-" if not np.isfinite(v) else f"{v:.1f}"),
            "jinit speedup": df["jinit_speedup"].map(
                lambda v: "-" if not np.isfinite(v) else f"{v:.2f}x"
            ),
            "compile s": df["compile_seconds"].map(lambda v: f"{v:.2f}"),
            "wall / train": df.get("wall_per_train", pd.Series([np.nan] * len(df))).map(
                lambda v: "-" if v is None or not np.isfinite(v) else f"{v:.2f}"
            ),
            "timed models": df["timed_models"],
            "MB/model": df.get("bytes_per_model", pd.Series([None] * len(df))).map(
                lambda v: "-" if v is None or not np.isfinite(v) else f"{v / 1e6:.2f}"
            ),
            "XLA kB/step": df.get("xla_bytes_per_model_step", pd.Series([None] * len(df))).map(
                lambda v: "-" if v is None or not np.isfinite(v) else f"{v / 1e3:.0f}"
            ),
        }
    )[
        [
            "batch_size",
            "n_models",
            "method",
            "precision",
            "model-epochs/s",
            "jinit speedup",
            "GFLOP/s",
            "% of peak",
            "% of roofline",
            "compile s",
            "wall / train",
            "timed models",
            "MB/model",
            "XLA kB/step",
        ]
    ]
    gl = pd.DataFrame(goals(doc))
    gl["met"] = gl["met"].map(lambda v: "-" if v is None else ("yes" if v else "**no**"))
    return head + "\n\n" + C.md_table(show) + "\n\n**Goals**\n\n" + C.md_table(gl)


def plot(docs: list[dict[str, Any]]):
    import matplotlib.pyplot as plt

    n_plots = sum(len({r["batch_size"] for r in d["rows"]}) for d in docs)
    fig, axes = plt.subplots(1, max(n_plots, 1), figsize=(5 * max(n_plots, 1), 4), squeeze=False)
    i = 0
    for doc in docs:
        df = table(doc)
        for bs, g in df.groupby("batch_size"):
            ax = axes[0, i]
            i += 1
            for (method, prec), gm in g.groupby(["method", "precision"], sort=False):
                gm = gm.sort_values("n_models")
                label = method if prec == "float32" else f"{method} {prec}"
                ax.plot(gm["n_models"], gm["model_epochs_per_s"], "o-", label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("models trained (N)")
            ax.set_ylabel("model-epochs per second")
            ax.set_title(
                f"{doc['device']['device_kind']} ({doc['device']['platform']}), batch {bs}",
                fontsize=9,
            )
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def report(out: Path, command: str) -> Path:
    docs = [json.loads(p.read_text()) for p in sorted(out.glob("benchmark_*.json"))]
    if not docs:
        raise FileNotFoundError(f"no benchmark_*.json in {out}; run without --report-only first")
    fig = C.save_figure(plot(docs), out / "throughput.png")
    sections = [
        "jinit's sweep (all N models in one compiled, vmapped program) against the loops a user would otherwise "
        "write, on the same data and model, in one process per platform. `jinit speedup` is jinit's "
        "model-epochs per second over the method's at the same N and batch size. FLOP/s use XLA's cost analysis "
        "of the compiled single-model step and evaluation (the same count for every method); `% of peak` is "
        "relative to a large float32 matmul timed in the same run; `% of roofline` to the memory roofline, "
        "min(peak, FLOPs / bytes x measured bandwidth) with the least traffic of an Adam step (parameters and both "
        "moments read and written once), on accelerators only (a CPU sweep keeps each chunk's state in cache). "
        "`MB/model` is XLA's buffer assignment of "
        "jinit's compiled epoch (arguments + outputs + temporaries - aliased - the data), per model.",
        *[markdown(d) for d in docs],
        f"![throughput]({fig})",
        "## Reproduce\n\n```bash\n"
        + "\n".join(dict.fromkeys(c for d in docs for c in d.get("commands", [command])))
        + "\n```\n\nNotes on what was changed to reach these numbers: "
        "`experiments/results/benchmark/NOTES.md`.",
    ]
    return C.write_report(out, "Benchmark: jinit's sweep vs the alternatives", sections)


def main(argv: list[str] | None = None) -> int:
    p = C.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--ns", default=None, help="numbers of models, comma-separated")
    p.add_argument(
        "--batch-sizes", default=None, help="batch sizes, comma-separated (default 32,128)"
    )
    p.add_argument("--methods", default=",".join(METHODS), help="methods to run")
    p.add_argument(
        "--precisions",
        default="float32",
        help=f"jinit's precisions, comma-separated: {', '.join(PRECISIONS)} (the other methods run float32)",
    )
    p.add_argument(
        "--sequential-models",
        type=int,
        default=None,
        help="models timed for the sequential methods (their rate is per model)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs of jinit and torch_func per point; the fastest counts (default 2, 1 with --smoke)",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of other (batch size, method) pairs already in this platform's JSON (same "
        "device kind): a long benchmark run as one command per batch size, or some methods run again",
    )
    p.add_argument(
        "--torch-func-max",
        type=int,
        default=None,
        help="largest N for torch_func (default: 64 on CPU, 4096 on GPU: 8192 runs out of an H100's 80 GB)",
    )
    args = p.parse_args(argv)
    accel = jax.devices()[0].platform != "cpu"
    args.ns = _ints(args.ns) or (
        [1, 4] if args.smoke else [1, 8, 64, 256, 1024, 4096, 8192] if accel else [1, 8, 64, 256]
    )
    args.batch_sizes = _ints(args.batch_sizes) or ([32] if args.smoke else [32, 128])
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; valid: {', '.join(METHODS)}")
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    bad = [p for p in args.precisions if p not in PRECISIONS]
    if bad or not args.precisions:
        raise ValueError(f"unknown precision(s) {bad}; valid: {', '.join(PRECISIONS)}")
    if args.sequential_models is None:
        args.sequential_models = 2 if args.smoke else 4
    if args.torch_func_max is None:
        args.torch_func_max = 4096 if accel else 64
    if args.repeats is None:
        args.repeats = 1 if args.smoke else 2
    args.peak_n = 512 if args.smoke else (8192 if accel else 4096)
    args.bandwidth_bytes = (1 << 22) if args.smoke else (1 << 30 if accel else 1 << 28)
    args.dataset = "digits" if args.smoke else "mnist"
    args.train_size = 256 if args.smoke else None
    args.test_size = 128 if args.smoke else None
    out = C.out_dir(args, NAME)
    if not args.report_only:
        doc = measure(args)
        doc["commands"] = [C.command_line(argv, NAME)]
        path = out / f"benchmark_{doc['device']['platform']}.json"
        if args.merge and path.exists():
            doc = merge(files.read_json(path), doc)
        files.write_json(path, doc)
    path = report(out, C.command_line(argv, NAME))
    print(f"wrote {path}")
    return 0


def _ints(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        vals = [int(t) for t in text.split(",")]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in vals):
        raise ValueError(f"expected positive integers, got {text!r}")
    return vals


if __name__ == "__main__":
    # one JAX device per core, the file backend for figures, one-line errors (see _common.run_script)
    sys.exit(C.run_script(NAME, main))
