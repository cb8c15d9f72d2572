"""Where a sweep's models train: memory estimates, the models per device (:func:`models_per_device`, part of a
model's arithmetic) and the chunk plan (:func:`chunk_plan`, which never changes a model's numbers), and the CPU
devices of this process (:func:`use_cpu_devices`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os

import jax
import numpy as np

from jinit import train as train_lib
from jinit.sweep.config import SweepConfig, check_int
from jinit.sweep.inputs import Inputs, abstract_model, linen_module

_log = logging.getLogger("jinit.sweep")


def _tree_bytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _param_and_opt_bytes(variables, tx) -> tuple[int, int]:
    """Bytes of a model's variables (parameters and state) and of the optimizer state of its parameters."""
    params = {"params": variables["params"]}
    return _tree_bytes(variables), _tree_bytes(jax.eval_shape(tx.init, params))


def state_bytes_per_model(inputs: Inputs, tx) -> int:
    """Bytes one model's training step streams through memory: its parameters, gradients and optimizer state."""
    p, opt = _param_and_opt_bytes(abstract_model(inputs)[2], tx)
    return 2 * p + opt


def bytes_per_model(config: SweepConfig, inputs: Inputs, tx) -> int:
    """Estimated device memory one model of the chunk needs (params, optimizer state, gradients, updates, the
    activations of a training batch kept for the backward pass, and of a test batch)."""
    fns, x1, variables = abstract_model(inputs)
    p, opt = _param_and_opt_bytes(variables, tx)
    module = linen_module(inputs.make_model, inputs.schemes[0][1], inputs.bias_init)
    if module is not None:

        def acts(v, x):
            return module.apply(v, x, capture_intermediates=True, mutable=["intermediates"])

        _, inter = jax.eval_shape(acts, variables, x1)
        per_example = _tree_bytes(inter)
    else:  # an NNX model: every value its training-mode forward pass computes (an over-estimate)
        params = {"params": variables["params"]}
        state = {k: v for k, v in variables.items() if k != "params"}
        key = jax.random.PRNGKey(0)
        jaxpr = jax.make_jaxpr(lambda p, s, x: fns.apply(p, s, x, True, key))(params, state, x1)
        per_example = sum(
            int(np.prod(v.aval.shape)) * np.dtype(v.aval.dtype).itemsize
            for eqn in jaxpr.jaxpr.eqns
            for v in eqn.outvars
            if hasattr(v.aval, "shape")
            and not jax.dtypes.issubdtype(v.aval.dtype, jax.dtypes.prng_key)
        )
    eval_bs = min(config.eval_batch_size, inputs.x_test.shape[0])
    activations = per_example * (3 * config.batch_size + eval_bs)
    return int(3 * p + opt + activations + 4096)


def memory_budget(config: SweepConfig, device) -> int:
    """Bytes per device a chunk may use (``max_memory``, else 40% of the device limit, else 2 GiB). On a CPU,
    whose devices share the host's memory, it is also at most half the memory this process can still get
    (:func:`host_memory_available`: the address-space limit, the cgroup limit, physical memory) split over the
    CPU devices, whatever ``max_memory`` says: a chunk that cannot be allocated fails or hangs instead of
    training."""
    if config.max_memory:
        budget = int(config.max_memory)
    else:
        try:
            stats = device.memory_stats() or {}
        except Exception:  # some backends do not implement memory_stats
            stats = {}
        budget = int(0.4 * stats["bytes_limit"]) if stats.get("bytes_limit") else 2 << 30
    if getattr(device, "platform", None) == "cpu":
        host = host_memory_available()
        if host is not None:
            n_cpu = max(1, sum(d.platform == "cpu" for d in jax.local_devices()))
            budget = min(budget, host // (2 * n_cpu))
    return budget


def gigabytes(n: int) -> str:
    """``n`` bytes as text (``"1.5 GB"``)."""
    return f"{n / 1e9:.3g} GB"


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def host_memory_available() -> int | None:
    """Bytes of memory this process can still get, at most: the smallest of the address-space limit
    (``RLIMIT_AS``, ``ulimit -v``) less the address space mapped now, the cgroup's memory limit less its usage
    (cgroup v2 ``memory.max`` / v1 ``memory.limit_in_bytes``), and the host's available memory (``MemAvailable``;
    else all physical memory). None where none of them can be read."""
    found = []
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            mapped = 0
            with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        mapped = int(line.split()[1]) * 1024
            found.append(max(0, soft - mapped))
    except (ImportError, OSError, ValueError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit = _read_int(limit_file)
        if limit is not None and limit < 2**60:  # v1 writes ~2**63 for "no limit"
            found.append(max(0, limit - (_read_int(usage_file) or 0)))
    available = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    if available is None:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if available:
        found.append(available)
    return min(found) if found else None


def check_grid_fits(config: SweepConfig, n_schemes: int, steps_per_epoch: int, n_test: int) -> None:
    """Refuses, before the grid is built, a grid whose results alone (curves, predictions, one row per model)
    need more host memory than this process can get."""
    n_models = n_schemes * config.seeds
    evals = config.epochs * (train_lib.intervals(steps_per_epoch, config.eval_every)[0] + 1)
    need = n_models * (
        n_test + 120 * evals + 600
    )  # measured ~100 bytes per curve row, ~500 per model row
    host = host_memory_available()
    if host is not None and need > host:
        raise ValueError(
            f"the grid of {n_models} models ({n_schemes} schemes x {config.seeds} seeds) needs about "
            f"{gigabytes(need)} of host memory for its results alone, more than the {gigabytes(host)} this process can get; "
            "use fewer seeds or schemes"
        )


# On a CPU a device trains its models fastest when their parameters, gradients and optimizer state stay in its share
# of the last-level cache (MNIST MLP on a 2-core CPU with 32 MiB L3: 4 per device 4.8, 32 per device 3.4 model-epochs
# per second). The models per device come from a fixed share, not from the host's cache, so that they (and so the
# models' numbers) do not depend on the machine. More than 8 tiny models per device did not help (digits MLP, 256
# models, 2 devices, 10 epochs: 4, 8, 16, 32 per device gave 163, 206, 152, 152 model-epochs/s on a loaded host), and
# a small k pads small grids less. Accelerators keep many models per program busy.
CPU_STATE_BYTES_PER_DEVICE = 8 << 20


MAX_MODELS_PER_DEVICE = {"cpu": 8}


ACCELERATOR_MODELS_PER_DEVICE = 1024


def models_per_device(
    config: SweepConfig, platform: str, *, state_bytes: int, per_model: int, budget: int
) -> int:
    """How many models one compiled program trains at once on one device (the width of the vmapped step).

    A model's arithmetic depends on this number (XLA vectorizes a batch of 2 models differently from a batch of
    8), so it is chosen from the model and the device kind alone, never from the grid or the number of devices:
    ``config.models_per_device`` when set; else on a CPU the largest power of two (at most 8) whose models'
    parameters, gradients and optimizer state (``state_bytes`` each) fit in 8 MiB; else (GPU/TPU) 1024. Either way
    at most what the per-device memory ``budget`` holds (``per_model`` bytes each), and at least 1.

    Args:
      config: the sweep config.
      platform: the device platform (``"cpu"``, ``"gpu"``, ``"tpu"``).
      state_bytes: bytes of one model's parameters, gradients and optimizer state.
      per_model: estimated device memory of one model in training (:func:`bytes_per_model`).
      budget: bytes a chunk may use on one device (data excluded).

    Returns:
      The models per device, ``k >= 1``.
    """
    if config.models_per_device is not None:
        return int(config.models_per_device)
    if platform == "cpu":
        fit = max(1, CPU_STATE_BYTES_PER_DEVICE // max(state_bytes, 1))
        k = min(MAX_MODELS_PER_DEVICE["cpu"], 1 << (fit.bit_length() - 1))
    else:
        k = ACCELERATOR_MODELS_PER_DEVICE
    fits = max(1, budget // max(per_model, 1))
    if fits < k:
        _log.warning(
            "only %d models fit in one device's memory budget (%s each, %s): %d models per device instead of "
            "%d; a model's numbers now depend on that budget (pass --models-per-device / models_per_device to "
            "fix them)",
            fits,
            gigabytes(per_model),
            gigabytes(budget),
            fits,
            k,
        )
    return min(k, fits)


def chunk_plan(
    n_models: int,
    per_device: int,
    n_devices: int,
    max_models_per_chunk: int | None = None,
    streams: int = 1,
) -> tuple[int, int]:
    """The chunk size and the number of devices a sweep uses.

    A chunk is ``per_device x devices x streams`` models: as many groups of ``per_device`` models as the grid needs
    (``ceil(n_models / per_device)``), at most ``streams`` per device (:func:`streams_per_device`) on at most
    ``n_devices`` devices, fewer when ``max_models_per_chunk`` asks for smaller chunks (never fewer than one group).
    Only the layout depends on this, never a model's numbers.

    Returns:
      ``(chunk_size, devices_used)``.
    """
    groups = max(1, min(n_devices * max(1, streams), math.ceil(n_models / per_device)))
    if max_models_per_chunk:
        groups = max(1, min(groups, max_models_per_chunk // per_device))
    return per_device * groups, min(n_devices, groups)


def host_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def streams_per_device(device, group_bytes: int, budget: int) -> int:
    """How many groups of models one device trains at the same time: on a CPU device, the cores each CPU device
    has (a group's small matmuls leave cores idle, and XLA:CPU runs two executions of one device at once), as long
    as the groups fit the device's memory budget; on an accelerator 1. The executions are the same programs on the
    same inputs, so this changes the speed only, never a model's bits. Measured on a 2-core CPU with one CPU device
    (MNIST MLP, 64 models, batch 128): 2.41 -> 2.67 model-epochs/s with 2 streams (the machine otherwise loaded).
    """
    if getattr(device, "platform", None) != "cpu":
        return 1
    n_cpu = max(1, sum(d.platform == "cpu" for d in jax.local_devices(backend="cpu")))
    return max(1, min(host_cores() // n_cpu, budget // max(1, group_bytes)))


def use_cpu_devices(n: int | None = None) -> int | None:
    """Splits the host CPU into ``n`` JAX devices, so that a sweep on CPU trains on every core at once.

    The sweep shards each chunk's model axis over the local devices; with one CPU device the cores share each
    operation, and part of every step (the small per-model matmuls, the optimizer update) leaves cores idle. With
    one device per core, each core trains its own share of the models. Measured on a 2-core CPU (MNIST MLP,
    Adam, 64 models): 3.4 -> 4.8 model-epochs per second at batch 128, 1.7 -> 3.0 at batch 32.

    It must run before JAX starts its backends (before the first computation): the ``jinit`` command line calls
    it first thing; from Python, call it right after ``import jinit``. It does nothing and returns None when it is
    too late, or when the count was already chosen with ``JAX_NUM_CPU_DEVICES`` or ``XLA_FLAGS=
    --xla_force_host_platform_device_count=N``. It does not change which devices JAX uses by default: on a
    GPU/TPU machine the sweep still runs on the accelerators.

    Args:
      n: the number of CPU devices (default: the cores this process may run on, at most 8).

    Returns:
      The device count requested, or None when nothing was changed.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("JAX_NUM_CPU_DEVICES") or "xla_force_host_platform_device_count" in flags:
        return None
    if n is None:
        n = min(host_cores(), 8)
    check_int("n", n, minimum=1)
    try:
        jax.config.update("jax_num_cpu_devices", int(n))
    except RuntimeError:  # the backends are up already
        return None
    return int(n)


def chunk_index(c: int, csize: int, n_models: int) -> list[int]:
    """The grid indices of the models of chunk ``c``."""
    return list(range(c * csize, min((c + 1) * csize, n_models)))
