"""Sphinx configuration of jinit's documentation: Markdown pages (MyST), the API reference from the docstrings
(autodoc + napoleon, Google style). Builds offline: no intersphinx, no remote theme assets.

    python3 -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's jinit, also when another copy is installed
os.environ.setdefault("MPLBACKEND", "Agg")

import jinit  # noqa: E402

project = "jinit"
author = "the jinit developers"
copyright = "the jinit developers"
release = version = jinit.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_heading_anchors = 3  # [text](page.md#a-heading) links, as on GitHub
myst_enable_extensions = ["dollarmath"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = "jinit"
napoleon_use_ivar = (
    True  # a class's Attributes: as fields of the class, not a second description of each
)
