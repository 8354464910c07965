"""Sphinx configuration for curvlab."""

import os
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import curvlab  # noqa: E402

project = "curvlab"
author = "The curvlab developers"
copyright = "2026, the curvlab developers"
release = curvlab.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": True}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()

templates_path = ["_templates"]
nitpicky = True
# references into other projects resolve through intersphinx only when it is enabled (network)
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(scipy|numpy|np|torch|matplotlib|optional|callable|iterable|array[-_]like)(\..*)?",
    ),
    # base classes of the optional adapters (no intersphinx offline)
    (r"py:.*", r"(transformers|lightning)(\..*)?"),
    (r"py:.*", r"(Tensor|Module|Generator|Figure|Axes|Axes3D|LinearOperator|DataLoader)"),
    # private base classes (shown in "Bases:" lines) have no pages of their own
    (r"py:class", r"curvlab(\.\w+)*\._\w+\.\w+"),
]
exclude_patterns = [
    "_build",
    "auto_examples/*.ipynb",
    "**.ipynb_checkpoints",
    "sg_execution_times.rst",
]

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
}
# no network in CI: intersphinx inventories are not fetched unless asked for
if not os.environ.get("CURVLAB_INTERSPHINX"):
    intersphinx_mapping = {}

html_theme = "pydata_sphinx_theme"
html_title = "curvlab"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}

warnings.filterwarnings("ignore", category=UserWarning, message="Matplotlib is currently using agg")

sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": os.environ.get("CURVLAB_GALLERY_PATTERN", r"/plot_"),
    "ignore_pattern": r"(__init__|_common|distributed_)",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "show_memory": False,
    "plot_gallery": "True",
    "reset_modules": ("matplotlib",),
    "min_reported_time": 1,
}
