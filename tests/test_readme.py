"""Every ```python and ```bash block of README.md, the documentation pages docs/*.md, experiments/README.md and
notebooks/README.md runs as written.

What the test changes, and only this (blocks of other languages, e.g. the ```console transcript of an interrupted
sweep, are not run):

* every block runs in a fresh process: a python block with ``python -c``, a bash block command by command with
  ``bash -c`` (``\\`` continuations joined, ``&&`` chains split, comments dropped), with this checkout first on
  ``PYTHONPATH``, in an empty temporary folder (the experiments README: in the repository root, with ``TMPDIR``
  the temporary folder, where ``--smoke`` writes);
* smoke size: ``jinit sweep`` commands get ``--seeds 2 --epochs 1 --train-size 512 --test-size 256 --no-progress``
  appended (argparse keeps the last value of a flag); ``jinit propagate`` commands at ``--depth 50`` get
  ``--depth 6 --width 64``; ``python experiments/NAME.py`` commands get ``--smoke --no-progress``; python blocks
  and the other commands run as written;
* ``path/to/mnist`` becomes the real MNIST folder of ``tests/conftest.py``; a block that names it is skipped when
  that folder is absent; ``/tmp/`` becomes the temporary folder;
* installing (``pip install ...``) and the test suite itself (``python3 -m pytest ...``) are not run: this test
  runs inside the installed environment, as part of that suite; ``ruff check .`` runs in the repository root; the
  documentation build (``python3 -m sphinx ...``) runs in tests/test_docs.py;
* a block of commands for a cluster (``srun``, ``gcloud``, or ``jinit ... --coordinator``, written with ``...``
  for the flags) is reported as skipped: it needs machines CI does not have.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every code block of the README and the docs

REPO = Path(__file__).resolve().parents[1]
# the real MNIST beside the checkout, as tests/conftest.py finds it
REAL_MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
DOCS = {
    "README.md": REPO / "README.md",
    **{
        f"docs/{p.name}": p
        for p in sorted((REPO / "docs").glob("*.md"))
        if p.name
        != "trackers.md"  # its blocks continue each other: test_trackers_page_runs_in_order
    },
    "experiments/README.md": REPO / "experiments" / "README.md",
}
#: A page whose blocks continue each other (test_trackers_page_runs_in_order).
TRACKERS_PAGE = REPO / "docs" / "trackers.md"
#: Documents whose blocks continue each other (a run folder made by a bash block, read by the python block after
#: it): all their blocks run in order, in one folder.
SEQUENTIAL = {"notebooks/README.md": REPO / "notebooks" / "README.md"}
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)
SWEEP_SMOKE = " --seeds 2 --epochs 1 --train-size 512 --test-size 256 --no-progress"
NOT_RUN = ("pip install", "python3 -m pytest", "python -m pytest", "python3 -m sphinx")


def _blocks() -> list[tuple[str, int, str, str]]:
    out = []
    for doc, path in DOCS.items():
        for i, m in enumerate(BLOCK.finditer(path.read_text(encoding="utf-8"))):
            out.append((doc, i, m.group(1), m.group(2)))
    return out


BLOCKS = _blocks()


def _commands(block: str) -> list[str]:
    """The block's commands: continuations joined, comments dropped, ``&&`` chains split."""
    text = re.sub(r"\\\n\s*", " ", block)
    cmds = []
    for line in text.splitlines():
        line = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
        cmds += [c.strip() for c in line.split("&&") if c.strip()]
    return cmds


def _smoke(cmd: str) -> str:
    if cmd.startswith("jinit sweep"):
        return cmd + SWEEP_SMOKE
    if cmd.startswith("jinit propagate") and "--depth 50" in cmd:
        return cmd + " --depth 6 --width 64"
    if re.match(r"python3? experiments/\w+\.py", cmd):
        return cmd + " --smoke --no-progress"
    return cmd


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TMPDIR"] = str(tmp_path)
    env.pop("MPLBACKEND", None)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, (
        f"{what} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out.stdout + out.stderr


def test_the_docs_have_blocks():
    kinds = {(doc, lang) for doc, _, lang, _ in BLOCKS}
    assert {
        ("README.md", "python"),
        ("README.md", "bash"),
        ("docs/initializers.md", "python"),
        ("docs/initializers.md", "bash"),
        ("docs/sweeps.md", "python"),
        ("docs/sweeps.md", "bash"),
        ("docs/experiment.md", "python"),
        ("docs/modern.md", "python"),
        ("docs/transfer.md", "python"),
        ("docs/transfer.md", "bash"),
        ("docs/precision.md", "python"),
        ("docs/precision.md", "bash"),
        ("experiments/README.md", "bash"),
    } <= kinds


@pytest.mark.parametrize(
    "doc,index,lang,block", BLOCKS, ids=[f"{d}-{i}-{lang}" for d, i, lang, _ in BLOCKS]
)
def test_block_runs(doc, index, lang, block, tmp_path):
    block = block.replace("/tmp/", f"{tmp_path}/")  # first: the data's own path may be under /tmp
    if "path/to/mnist" in block:
        missing = [f for f in MNIST_FILES if not (REAL_MNIST_DIR / f).is_file()]
        if missing:
            pytest.skip(f"the block reads MNIST; not found at {REAL_MNIST_DIR}")
        block = block.replace("path/to/mnist", str(REAL_MNIST_DIR))
    cluster = [c for c in _commands(block) if c.startswith(("srun ", "gcloud ")) or " ... " in c]
    if cluster:
        pytest.skip(f"commands for a cluster: {cluster[0][:60]}")
    env = _env(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    cwd = REPO if doc.startswith("experiments/") else work
    if lang == "python":
        output = _run([sys.executable, "-c", block], work, env, f"{doc} python block {index}")
        if 'sweep.load("runs/x").params' in block:
            assert "(15, 64, 128)" in output  # the shape its comment promises
        return
    commands = _commands(block)
    if all(c.startswith("python3 -m sphinx") for c in commands):
        pytest.skip("the documentation build: tests/test_docs.py runs it")
    ran = 0
    for cmd in commands:
        if cmd.startswith(NOT_RUN):
            continue
        if cmd.startswith("ruff"):
            if shutil.which("ruff") is None:
                continue
            _run(shlex.split(cmd), REPO, env, cmd)
            continue
        output = _run(["bash", "-c", _smoke(cmd)], cwd, env, f"{doc}: {_smoke(cmd)}")
        ran += 1
        if "--schemes 'normal(stddev=0.01)'" in cmd and "--width 500" in cmd:
            # the numbers the README quotes for this command
            for number in ("0.214", "0.0477", "0.0107", "0.00239"):
                assert number in output, output
    assert ran, f"nothing of {doc} block {index} was run"


def test_sequential_docs_run_in_order(tmp_path):
    """notebooks/README.md, "From the CLI run to the notebook": the jinit sweep, then the notebook code on its
    run folder."""
    env = _env(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    for doc, path in SEQUENTIAL.items():
        blocks = [
            (m.group(1), m.group(2)) for m in BLOCK.finditer(path.read_text(encoding="utf-8"))
        ]
        assert [lang for lang, _ in blocks] == ["bash", "python"], doc
        for lang, block in blocks:
            if lang == "bash":
                for cmd in _commands(block):
                    _run(["bash", "-c", _smoke(cmd)], work, env, f"{doc}: {_smoke(cmd)}")
            else:
                output = _run([sys.executable, "-c", block], work, env, f"{doc} python block")
                assert "'scheme': " in output and "(64, 128)" in output, output


def test_trackers_page_runs_in_order(tmp_path):
    """docs/trackers.md: a sweep with --tensorboard, one from Python, its event files read back, W&B offline, a
    tracker of one's own; in one folder, in order (the ```py MLflow sketch is not run: it needs mlflow)."""
    pytest.importorskip("tensorboardX")
    pytest.importorskip("wandb")
    env = _env(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    blocks = [(m.group(1), m.group(2)) for m in BLOCK.finditer(TRACKERS_PAGE.read_text("utf-8"))]
    assert [lang for lang, _ in blocks] == ["bash", "python", "python", "python", "python"]
    outputs = []
    for i, (lang, block) in enumerate(blocks):
        if lang == "bash":
            for cmd in _commands(block):
                outputs.append(_run(["bash", "-c", _smoke(cmd)], work, env, f"trackers.md: {cmd}"))
        else:
            outputs.append(_run([sys.executable, "-c", block], work, env, f"trackers.md block {i}"))
    assert (work / "runs" / "tb" / "he_normal" / "seed_0").is_dir()
    assert outputs[2].startswith("[(0, ")  # test/accuracy at init, then at each epoch's end
    assert len(list((work / "runs" / "wandb").glob("offline-run-*"))) == 4
    assert outputs[4].startswith(
        "['step,tag,value', '0,test/"
    )  # the CSV header, then step 0 (at init)


def test_smoke_substitutions_keep_the_documented_flags():
    cmd = "jinit sweep --dataset mnist --seeds 10 --epochs 5 --out runs/mnist"
    assert _smoke(cmd).startswith(cmd) and _smoke(cmd).endswith(SWEEP_SMOKE)
    assert _commands("a\\\n  b # c\n# d\nx && y\n") == ["a b", "x", "y"]
