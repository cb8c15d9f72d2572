"""The sweep engine: many seeds x many initialization schemes trained at once by one compiled, vmapped program.

A sweep is the grid ``schemes x seeds`` (``schemes x learning_rate x weight_decay x init_scale x seeds`` when those
take several values: hyperparameter axes, trained by the same compiled program, see :mod:`jinit.sweep.axes`). Every (scheme, seed) model gets its own keys, derived with ``fold_in``
only (see :func:`jinit.keys.model_keys`), so a model is the same model whatever else is in the grid. The initial parameters of
the models are stacked on a leading *model axis*, and one ``jax.jit``-compiled function trains them all: an epoch
is one ``lax.scan`` over steps of the single-model step of :mod:`jinit.train`, ``jax.vmap``-ped over that axis, each
batch gathered from the training set, which was put on the device once (``make_train(...).vmapped_epoch``). On
GPUs/TPUs the kernels keep their model axis just before their last dimension while the loop runs, so a layer whose
input every model shares is one plain matmul (see :func:`_inner_model_axis`). With ``vary="init"`` (the default)
every model sees the same batches, so the permutation and the batch gather are computed once per step and shared
by all models (``in_axes=None``); with ``vary="data"``/``"both"`` each model gathers its own batch.

Models per device and chunks: every compiled program trains the same number ``k`` of models on one device
(``models_per_device``; chosen from the model's size and the device kind alone, never from the grid, see
:func:`models_per_device`), because the arithmetic XLA generates for a model depends on how many models share
its program (and on whether the program spans several devices): so a model's final parameters do not depend on
the layout of the sweep. A chunk is ``k x (devices used)`` models (at most ``max_models_per_chunk``, at least
``k``), the last one padded with copies that are dropped; each device runs its own group of ``k`` models of the
chunk with the same single-device program. Each completed chunk is written to ``chunks/NNNNN.npz`` of the run
folder.

Resume: with ``out``, :func:`run` takes the folder's lock, then writes each chunk as it finishes and, within a
chunk, an orbax-checkpoint of the chunk's stacked ``TrainState`` and its epoch logs at an epoch boundary (at most
every ``checkpoint_every`` seconds, default 60). Run again with the same config and ``out`` after a kill, it
skips the chunks on disk (their fingerprint -- a hash of config, grid, parameter shapes and data -- and model
indices must match), restarts a chunk from its checkpoint, keeps the chunk size of the first start, and ends
with results bit for bit those of an uninterrupted run. A folder holding this sweep, complete, is read back
without training; one holding another sweep is refused unless ``overwrite``. SIGINT (Ctrl-C) and SIGTERM stop
the sweep at once (also while the device computes; file writes finish first) with :class:`SweepInterrupted`,
which says what was saved. :func:`check_determinism` trains a few models of a grid twice and alone.

Devices: the groups of ``k`` models of a chunk are spread over the local devices (as many as the grid needs),
each trained by a program compiled for one device with the data put on every device once. Models are
independent and every model is computed by the same single-device program of ``k`` models, so a model's final
parameters are bit for bit the same with 1 or N devices or processes, in any grid, chunk size or order (the
reproducibility contract in the README; tested in tests/test_layout.py).

Several processes and hosts: start every process with ``jax.distributed.initialize()`` (or
:func:`jinit.distributed.initialize`; ``jinit sweep`` does it from its flags or from srun / mpirun / a TPU pod
slice), then call :func:`run` with the same config and the same ``out`` folder on a filesystem all processes share.
Each process trains the chunks ``i`` with ``i % jax.process_count() == jax.process_index()`` on its local devices
and writes them to ``out/chunks``; process 0 holds the lock and chooses the layout (models per device, chunk
size). The processes meet in JAX's coordination service (:class:`jinit.distributed.SweepGroup`: a failure in one
is posted there and stops the others, a process that does not see process 0's config.json is told the folder is
not shared); after every chunk is written, every process assembles the full result from the chunk files and
process 0 writes the tables. Tested with 2 local CPU processes (``tests/test_multiprocess.py``).

Keys (as in DESIGN.md), with ``root = PRNGKey(config.seed)`` and ``s`` the seed number:

* init: ``fold_in(fold_in(fold_in(root, 0), stable_hash(scheme)), s)`` (``s -> 0`` unless ``vary`` includes init);
  a parameter a :func:`jinit.rules` pattern matches is drawn with ``fold_in(fold_in(fold_in(root, 0),
  stable_hash(path)), s)`` instead (its ``/``-joined path), so it does not change when rules for other layers do;
* data order: ``fold_in(fold_in(root, 1), s)`` (``s -> 0`` unless ``vary`` includes data), per epoch
  ``fold_in(data_key, epoch)``;
* dropout: ``fold_in(fold_in(root, 2), s)`` (varies with the seed like the data order), per step
  ``fold_in(fold_in(dropout_key, epoch), step)``.

Divergence: a model whose training loss becomes non-finite, or explodes (more than
:data:`jinit.train.DIVERGENCE_FACTOR` times its first step's loss), is marked diverged at the first such step; vmap
keeps models independent, so it cannot disturb any other model.

Example:
    >>> from jinit import sweep
    >>> cfg = sweep.SweepConfig(schemes=("zeros", "he_normal"), seeds=2, epochs=1, hidden=(16,),
    ...                         train_size=256, test_size=128)
    >>> result = sweep.run(cfg, progress=False)
    >>> result.predictions.shape
    (4, 128)
    >>> list(result.summary()["scheme"])  # doctest: +SKIP
    ['he_normal', 'zeros']

Modules (one job each): :mod:`jinit.sweep.config` (``SweepConfig``, scheme resolution), :mod:`jinit.keys` (the key
derivation, shared with :mod:`jinit.propagation`), :mod:`jinit.sweep.setup` (data, model, optimizer, checks before
compiling), :mod:`jinit.sweep.axes` (hyperparameter axes: the injected optimizer, per-model values, the init
scale), :mod:`jinit.sweep.grid` (memory estimate, models per device, chunk plan), :mod:`jinit.sweep.program`
(compiled programs and their bounded caches, initial parameters), :mod:`jinit.sweep.execute` (:func:`run` and the
chunk loop), :mod:`jinit.sweep.signals` (SIGINT/SIGTERM), :mod:`jinit.sweep.store` (fingerprints, resume),
:mod:`jinit.sweep.assemble` (chunks to a result, :func:`load`), :mod:`jinit.sweep.determinism`.
"""

from jinit.keys import ModelKeys, model_keys, stable_hash
from jinit.results import SweepResult
from jinit.sweep import (
    assemble,
    axes,
    config,
    determinism,
    execute,
    grid,
    program,
    setup,
    signals,
    store,
)
from jinit.sweep.assemble import load
from jinit.sweep.config import (
    DEFAULT_SCHEMES,
    MODEL_NAMES,
    VARY,
    SweepConfig,
    applicable_schemes,
    parse_schemes,
    resolve_schemes,
    schemes_left_out_of_all,
)
from jinit.sweep.determinism import DeterminismReport, check_determinism
from jinit.sweep.execute import run
from jinit.sweep.grid import (
    ACCELERATOR_MODELS_PER_DEVICE,
    CPU_STATE_BYTES_PER_DEVICE,
    MAX_MODELS_PER_DEVICE,
    bytes_per_model,
    chunk_plan,
    host_memory_available,
    memory_budget,
    models_per_device,
    state_bytes_per_model,
    use_cpu_devices,
)
from jinit.sweep.program import INIT_BLOCK, MAX_CACHED_PROGRAMS, initial_params, lsuv_batch
from jinit.sweep.signals import SIGNAL_GRACE_SECONDS, SweepInterrupted

__all__ = [
    "ACCELERATOR_MODELS_PER_DEVICE",
    "CPU_STATE_BYTES_PER_DEVICE",
    "DEFAULT_SCHEMES",
    "DeterminismReport",
    "INIT_BLOCK",
    "MAX_CACHED_PROGRAMS",
    "MAX_MODELS_PER_DEVICE",
    "MODEL_NAMES",
    "ModelKeys",
    "SIGNAL_GRACE_SECONDS",
    "SweepConfig",
    "SweepInterrupted",
    "SweepResult",
    "VARY",
    "applicable_schemes",
    "assemble",
    "axes",
    "bytes_per_model",
    "check_determinism",
    "chunk_plan",
    "config",
    "determinism",
    "execute",
    "grid",
    "host_memory_available",
    "initial_params",
    "load",
    "lsuv_batch",
    "memory_budget",
    "model_keys",
    "models_per_device",
    "parse_schemes",
    "program",
    "resolve_schemes",
    "run",
    "schemes_left_out_of_all",
    "setup",
    "signals",
    "stable_hash",
    "state_bytes_per_model",
    "store",
    "use_cpu_devices",
]
