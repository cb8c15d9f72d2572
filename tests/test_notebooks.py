"""Every notebook runs top to bottom, at smoke size (``JINIT_SMOKE=1``), in a fresh kernel with the notebook's own
matplotlib backend (inline), and every plotting cell shows its figure. A cell tagged ``colab-install`` (installing
jinit when the notebook runs in Colab) is skipped: the tests run the checkout."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every notebook, executed top to bottom

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

#: A cell that draws: pyplot, jinit.plots, a ``.plot(...)`` (propagation.plot, result.plot).
PLOTTING = re.compile(r"\bplt\.|\bplots\.|\.plot\(")
#: Plotting cells per notebook: a notebook that loses or gains one must update this on purpose.
EXPECTED_PLOTTING_CELLS = {
    "01_initializers.ipynb": 2,
    "02_seed_sweep.ipynb": 5,
    "03_signal_propagation.ipynb": 4,
    "04_width_and_depth.ipynb": 3,
    "05_fair_comparison.ipynb": 2,
    "06_transfer.ipynb": 3,
}
#: Cells that only install jinit where it is missing (Colab); the tests run the checkout itself and skip them.
SKIPPED_TAG = "colab-install"


def _skipped(cell) -> bool:
    return SKIPPED_TAG in cell.get("metadata", {}).get("tags", [])


def test_transfer_notebook_opens_with_a_colab_install_cell():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOKS[0].parent / "06_transfer.ipynb", as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "code" and _skipped(first)
    assert 'if "google.colab" in sys.modules:' in first.source and "%pip install" in first.source


def _images(cell) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for out in cell.get("outputs", [])
        if out.get("output_type") in ("display_data", "execute_result")
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_and_shows_every_figure(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("JINIT_SMOKE", "1")
    # the kernel must pick its own backend (ipykernel: inline), as in Jupyter: no MPLBACKEND from the outside
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("JINIT_CACHE_DIR", str(tmp_path / "cache"))
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} is committed with outputs; strip them"
    )
    skipped = [c for c in nb.cells if _skipped(c)]
    assert all("google.colab" in c.source for c in skipped)  # an install cell acts in Colab only
    nb.cells = [c for c in nb.cells if not _skipped(c)]
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [
        out for c in code for out in c.get("outputs", []) if out.get("output_type") == "error"
    ]
    assert not errors, errors
    plotting = [c for c in code if PLOTTING.search(c.source)]
    assert len(plotting) == EXPECTED_PLOTTING_CELLS[path.name]
    # exactly one image per plotting cell: none is a figure that never showed, two is a figure shown twice
    shown = {c.source.splitlines()[0]: _images(c) for c in plotting}
    assert all(n == 1 for n in shown.values()), shown
    assert sum(_images(c) for c in code) == len(plotting)


def test_importing_jinit_leaves_the_matplotlib_backend_alone():
    """Importing jinit (plots, propagation, the CLI module) and drawing a figure never switches the backend the
    session chose (in Jupyter: inline; switching to Agg is what made every figure disappear)."""
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import jinit, jinit.plots, jinit.propagation, jinit.cli, jinit.sweep\n"
        "import pandas as pd\n"
        "df = pd.DataFrame({'scheme': ['a', 'a'], 'seed': [0, 0], 'layer': [0, 1], 'act_std': [1.0, 0.5]})\n"
        "fig = jinit.propagation.plot(df, 'act_std')\n"
        "import matplotlib.pyplot as plt\n"
        "assert plt.gcf() is fig, 'a figure not managed by pyplot never shows in a notebook'\n"
        "print(matplotlib.get_backend())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "svg"
