"""Sphinx configuration of gradflow's documentation site (``make docs``).

Tutorials are MyST notebooks (``tutorials/*.md``) executed at build time; the
API pages are built from each package's ``__all__`` and its docstrings
(``_ext/gradflow_docs.py``). Nothing is fetched from the network: no
intersphinx, no CDN assets (the build fails if a page loads one).

``-t api`` builds the API reference alone, without executing anything
(tests/test_docs.py uses it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

# The tutorials' kernels start with matplotlib's inline backend, so a figure a
# cell returns (gradflow.plots builds figures without pyplot) is shown on the
# page, as SVG. Written under _build: IPython keeps files in its directory.
_IPYTHON = HERE / "_build" / "ipython"
(_IPYTHON / "profile_default").mkdir(parents=True, exist_ok=True)
(_IPYTHON / "profile_default" / "ipython_kernel_config.py").write_text(
    'c.IPKernelApp.matplotlib = "inline"\n'
    'c.InlineBackend.figure_formats = {"svg"}\n'
    "c.HistoryManager.enabled = False\n"
    # ipykernel warns on every start that its local TCP sockets are unencrypted
    'c.IPKernelApp.log_level = "ERROR"\n'
)
os.environ["IPYTHONDIR"] = str(_IPYTHON)

import gradflow  # noqa: E402

project = "gradflow"
author = "the gradflow authors"
copyright = "the gradflow authors"
release = gradflow.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "gradflow_docs",
]

API_ONLY = tags.has("api")  # type: ignore[name-defined]  # noqa: F821
if not API_ONLY:
    extensions.insert(0, "myst_nb")

root_doc = "api/index" if API_ONLY else "index"
include_patterns = ["api/**"] if API_ONLY else ["**"]
exclude_patterns = ["_build", "_ext", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# -- API reference ------------------------------------------------------------
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": False}
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes as a field list: no second object per field beside :members:
napoleon_use_ivar = True
napoleon_use_rtype = False
python_use_unqualified_type_names = True
toc_object_entries_show_parents = "hide"

# -- MyST and notebooks -------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "cache"
nb_execution_cache_path = str(HERE / "_build" / ".jupyter_cache")
nb_execution_raise_on_error = True
# each notebook runs in a temporary folder: files it writes stay out of docs/
nb_execution_in_temp = True
nb_execution_show_tb = True
# per cell; each tutorial is meant to run in well under a minute on two cores
nb_execution_timeout = 300
# no require.js / widget scripts from a CDN: the tutorials use no widgets
nb_ipywidgets_js = {}
nb_merge_streams = True

# -- HTML ---------------------------------------------------------------------
html_theme = "alabaster" if API_ONLY else "sphinx_book_theme"
html_title = f"gradflow {release}"
html_copy_source = False
html_show_sourcelink = False
if not API_ONLY:
    html_static_path = ["_static"]
    html_css_files = ["gradflow.css"]
    html_theme_options = {
        "show_toc_level": 2,
        "use_download_button": True,
        "use_fullscreen_button": False,
        "navigation_with_keys": False,
    }
