"""The documentation site (docs/, Sphinx + MyST): it builds with warnings as errors, offline, with the README's
own command (slow tier); the README stays a short front page that links every page, and every link of the README
and the pages points at a file and heading that exist (default tier, no Sphinx needed).

The code blocks of the pages run in tests/test_readme.py, as the README's do.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
#: the README's command that builds the site, and the folder it writes
BUILD = re.compile(r"^(python3 -m sphinx [^\n#]*?) docs/_build/html\s*$", re.M)
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's (and MyST's ``myst_heading_anchors``) anchor of a heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def _links(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_readme_is_a_short_front_page():
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move the detail into docs/"
    first = next(i for i, line in enumerate(lines) if "kernel_init=jinit." in line)
    assert first < 60, f"the first kernel_init= example is at line {first + 1}"
    linked = {Path(t.split("#")[0]).as_posix() for t in _links(README)}
    missing = [p.name for p in PAGES if p.name != "index.md" and f"docs/{p.name}" not in linked]
    assert not missing, f"README.md does not link {missing}"


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_point_at_files_and_headings_that_exist(path):
    for target in _links(path):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{path.name}: {target} -> {dest} does not exist"
        if anchor:
            assert dest.suffix == ".md", f"{path.name}: {target}"
            assert anchor in _anchors(dest), f"{path.name}: no heading #{anchor} in {dest.name}"


def test_every_page_is_in_the_toctree_and_no_remote_inventory():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    toctree = index.split("```{toctree}", 1)[1].split("```", 1)[0]
    entries = {
        line.strip() for line in toctree.splitlines() if line.strip() and not line.startswith(":")
    }
    assert entries == {p.stem for p in PAGES if p.name != "index.md"}
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    assert "sphinx.ext.intersphinx" not in conf  # the build fetches nothing


def test_slug_is_githubs():
    assert _slug("Your own data, other tasks, and a validation split") == (
        "your-own-data-other-tasks-and-a-validation-split"
    )
    assert _slug("What jinit deletes, and when") == "what-jinit-deletes-and-when"
    assert _slug("`jinit.sweep`") == "jinitsweep"


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors(tmp_path):
    """The README's build command (Sphinx, MyST pages, autodoc of the public modules) with the output folder in a
    temporary one: any warning fails it, and so would any attempt to reach the network (the proxies point at a
    closed local port)."""
    found = BUILD.findall(README.read_text(encoding="utf-8"))
    assert len(found) == 1, "README.md shows one docs build command ending in docs/_build/html"
    args = shlex.split(found[0])
    assert args[:3] == ["python3", "-m", "sphinx"] and "-W" in args, args
    out = tmp_path / "html"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[proxy] = "http://127.0.0.1:9"
    env.pop("no_proxy", None), env.pop("NO_PROXY", None)
    assert args[-1] == "docs", args  # the source folder; the output folder is the temporary one
    cmd = [sys.executable, "-m", "sphinx", "-d", str(tmp_path / "doctrees"), *args[3:], str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr[-5000:]
    for page in PAGES:
        assert (out / f"{page.stem}.html").is_file(), page.name
    api = (out / "api.html").read_text(encoding="utf-8")
    for name in (
        "jinit.he_normal",
        "jinit.sweep.run",
        "jinit.sweep.SweepConfig",
        "jinit.metrics.best_set",
        "jinit.distributed.initialize",
        "jinit.results.SweepResult",
        "jinit.transfer.check",
        "jinit.sweep.precision.Precision",
    ):
        assert f'id="{name}"' in api, name
