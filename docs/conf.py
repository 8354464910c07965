"""Sphinx configuration for curvlab."""

import os
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# build-time helpers of the site (gallery style, the index page's example)
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

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
    # a packaged MathJax copied into _static/mathjax: math renders without a network
    "sphinx-mathjax-offline",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    # Markdown sources: the changelog page includes CHANGELOG.md
    "myst_parser",
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
    "**/sg_execution_times.rst",
]

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
}
# no network in CI: intersphinx inventories are not fetched unless asked for
if not os.environ.get("CURVLAB_INTERSPHINX"):
    intersphinx_mapping = {}

REPOSITORY = "https://github.com/curvlab/curvlab"  # pyproject.toml [project.urls]

html_theme = "pydata_sphinx_theme"
html_title = "curvlab"
html_static_path = ["_static"]
# wider gallery pages, code and printed output that scroll inside the column, wide tables
html_css_files = ["curvlab.css"]
# a stated default colour mode: without one the theme logs a console error on a first visit
html_context = {"default_mode": "auto"}
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    # the source repository in the header (the theme's icon, no external script)
    "icon_links": [
        {"name": "Source repository", "url": REPOSITORY, "icon": "fa-brands fa-github"},
    ],
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
    # matplotlib's defaults, then the gallery's one figure style (palette, light grid)
    "reset_modules": ("matplotlib", "curvlab_site.gallery_style"),
    "min_reported_time": 1,
    # the computation-times pages load jQuery and DataTables from CDNs (the site is offline)
    "write_computation_times": False,
}


def setup(app):
    """Run the index page's example before the sources are read (its output and figure are
    included by index.rst, so they always match the code shown)."""
    from curvlab_site import run_index_example

    app.connect("builder-inited", run_index_example)
