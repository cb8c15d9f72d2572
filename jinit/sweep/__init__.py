"""The sweep engine: many seeds x many initialization schemes (x hyperparameter values) trained at once by one
compiled, vmapped program per device (and per precision, :mod:`~jinit.sweep.precision`).

A sweep is a pipeline (``docs/architecture.md``), one module per stage:

* :mod:`~jinit.sweep.plan`: validate the :class:`SweepConfig`, resolve the data, task, model, schemes and optimizer
  (:mod:`~jinit.sweep.inputs`, :mod:`~jinit.sweep.schemes`, :mod:`~jinit.sweep.hyper`,
  :mod:`~jinit.sweep.precision`), build the grid and the
  layout (:mod:`~jinit.sweep.layout`): a :class:`~jinit.sweep.plan.Plan`, before anything compiles;
* :mod:`~jinit.sweep.program`: the compiled epoch (``jit`` of a ``lax.scan`` over steps of the ``vmap``-ped
  single-model step of :mod:`jinit.train`) and the schemes' init programs, in a :class:`ProgramCache` keyed by
  what they compute;
* :mod:`~jinit.sweep.trainer`: the chunk loop, every device busy at once, no I/O (callbacks for checkpoints,
  progress, trackers);
* :mod:`~jinit.sweep.store`: the run folder (:mod:`~jinit.sweep.folder`, :mod:`~jinit.sweep.lock`,
  :mod:`~jinit.sweep.checkpoints`): resume, chunk files, the tables;
* :mod:`~jinit.sweep.assemble`: chunk arrays -> :class:`SweepResult`; :func:`load` of a run folder;

and :func:`run` (:mod:`~jinit.sweep.driver`) calls them in order. Several processes are one object
(:mod:`~jinit.sweep.group`).

Keys (:mod:`jinit.keys`): a model's init, data-order and dropout keys come from ``fold_in`` of (root seed, scheme
label, seed number), so a model is the same model whatever else is in its grid. Every compiled program trains
``models_per_device`` models on one device (chosen from the model's size and the device kind), so a model's final
parameters depend on its own definition, that number, the software and the device kind, never on the grid's size
or order, the chunk size or the number of devices (the README's reproducibility contract; tests/test_layout.py).

Example:
    >>> from jinit import sweep
    >>> cfg = sweep.SweepConfig(schemes=("zeros", "he_normal"), seeds=2, epochs=1, hidden=(16,),
    ...                         train_size=256, test_size=128)
    >>> result = sweep.run(cfg, progress=False)
    >>> result.predictions.shape
    (4, 128)
"""

from jinit.keys import ModelKeys, model_keys, stable_hash
from jinit.registry import parse_schemes
from jinit.results import SweepResult
from jinit.sweep import (
    assemble,
    checkpoints,
    chunks,
    config,
    determinism,
    driver,
    folder,
    group,
    hyper,
    inputs,
    layout,
    lock,
    plan,
    precision,
    program,
    schemes,
    signals,
    store,
    trainer,
)
from jinit.sweep.assemble import load
from jinit.sweep.config import DEFAULT_SCHEMES, MODEL_NAMES, VARY, SweepConfig
from jinit.sweep.determinism import DeterminismReport, check_determinism
from jinit.sweep.driver import run
from jinit.sweep.folder import RunFolderMismatch
from jinit.sweep.layout import (
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
from jinit.sweep.lock import RunFolderInUse
from jinit.sweep.plan import Plan, make_plan
from jinit.sweep.precision import Precision
from jinit.sweep.program import (
    INIT_BLOCK,
    MAX_CACHED_PROGRAMS,
    ProgramCache,
    default_cache,
    enable_persistent_cache,
    initial_params,
    lsuv_batch,
)
from jinit.sweep.schemes import applicable_schemes, resolve_schemes, schemes_left_out_of_all
from jinit.sweep.signals import SIGNAL_GRACE_SECONDS, SweepInterrupted
from jinit.sweep.trainer import Callback, EpochEnd

__all__ = [
    "ACCELERATOR_MODELS_PER_DEVICE",
    "CPU_STATE_BYTES_PER_DEVICE",
    "Callback",
    "DEFAULT_SCHEMES",
    "DeterminismReport",
    "EpochEnd",
    "INIT_BLOCK",
    "MAX_CACHED_PROGRAMS",
    "MAX_MODELS_PER_DEVICE",
    "MODEL_NAMES",
    "ModelKeys",
    "Plan",
    "Precision",
    "ProgramCache",
    "RunFolderInUse",
    "RunFolderMismatch",
    "SIGNAL_GRACE_SECONDS",
    "SweepConfig",
    "SweepInterrupted",
    "SweepResult",
    "VARY",
    "applicable_schemes",
    "assemble",
    "bytes_per_model",
    "check_determinism",
    "checkpoints",
    "chunk_plan",
    "chunks",
    "config",
    "default_cache",
    "determinism",
    "driver",
    "enable_persistent_cache",
    "folder",
    "group",
    "host_memory_available",
    "hyper",
    "initial_params",
    "inputs",
    "layout",
    "load",
    "lock",
    "lsuv_batch",
    "make_plan",
    "memory_budget",
    "model_keys",
    "models_per_device",
    "parse_schemes",
    "plan",
    "precision",
    "program",
    "resolve_schemes",
    "run",
    "schemes",
    "schemes_left_out_of_all",
    "signals",
    "stable_hash",
    "state_bytes_per_model",
    "store",
    "trainer",
    "use_cpu_devices",
]
