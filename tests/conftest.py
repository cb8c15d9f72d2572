"""Shared fixtures of the test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

# The full real MNIST (four IDX .gz files) lives beside the project checkout on development and
# CI machines; a fresh clone does not have it, and the tests that need it skip.
REAL_MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_dir(tmp_path_factory):
    """Every test session caches datasets in a temporary folder, never in ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JINIT_CACHE_DIR", str(tmp_path_factory.mktemp("jinit-cache")))
        yield


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder of the real MNIST IDX files; skips the test when it is absent."""
    missing = [f for f in MNIST_FILES if not (REAL_MNIST_DIR / f).is_file()]
    if missing:
        pytest.skip(f"real MNIST not found at {REAL_MNIST_DIR} (missing {', '.join(missing)})")
    return REAL_MNIST_DIR


class CompileCounter:
    """Counts the executables XLA makes: backend compilations (jax.monitoring's backend-compile event) and loads
    from JAX's persistent compilation cache (its cache-hit event), which take the place of a compilation."""

    EVENT = "/jax/core/compile/backend_compile_duration"
    HIT = "/jax/compilation_cache/cache_hits"

    def __init__(self):
        self.count = 0

    def __call__(self, event: str, *args, **kwargs) -> None:
        if event in (self.EVENT, self.HIT):
            self.count += 1


@pytest.fixture
def compile_counter():
    """A :class:`CompileCounter` listening while the test runs."""
    import jax

    counter = CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(counter)
    jax.monitoring.register_event_listener(counter)
    yield counter
    jax.monitoring.unregister_event_duration_listener(counter)
    jax.monitoring.unregister_event_listener(counter)


@pytest.fixture
def no_persistent_cache():
    """JAX's persistent compilation cache off while the test runs (a program compiled again is compiled, not
    loaded)."""
    import jax

    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    yield
    jax.config.update("jax_enable_compilation_cache", enabled)
