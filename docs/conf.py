"""Sphinx configuration: furo theme, Markdown pages (MyST), API reference from the docstrings.

Built by ``nox -s docs`` with warnings as errors. Offline by design: no intersphinx mapping
(nothing is fetched during a build), so references to aiohttp or the standard library in
signatures stay plain text rather than links.
"""

from __future__ import annotations

import re
from pathlib import Path

from sphinx.application import Sphinx

import aiorunlist

project = "aiorunlist"
author = "The aiorunlist developers"
copyright = "the aiorunlist developers"
release = aiorunlist.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# MyST: ```{directive} fences, {eval-rst} blocks, and anchors for headings down to ###, so
# that pages can link to each other's sections as [text](errors.md#what-is-retried).
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: signatures stay short; the types go into each parameter's description.
autodoc_typehints = "description"
autodoc_member_order = "bysource"
# Unresolvable references (aiohttp.ClientSession, ...) render as plain text: there is no
# intersphinx to resolve them, and warning about each would fail the build for nothing.
nitpicky = False

html_theme = "furo"
html_title = f"aiorunlist {release}"

# Pages written alongside these (the command line, the benchmarks): listed in the index's
# toctrees when their file exists, after the entry named here, unless index.md lists them
# already. A missing page would otherwise fail the build (a toctree entry to nothing), and a
# present but unlisted one too (a page in no toctree).
OPTIONAL_PAGES = {"cli": "howto/testing", "performance": "reliability"}


def _list_optional_pages(app: Sphinx, docname: str, source: list[str]) -> None:
    if docname != root_doc:
        return
    lines = source[0].split("\n")
    for page, after in OPTIONAL_PAGES.items():
        if page in lines or not (Path(app.srcdir) / f"{page}.md").is_file():
            continue
        lines.insert(lines.index(after) + 1, page)
    source[0] = "\n".join(lines)


# Private parameters (a model's ``_absent``: the keys the server left out) are the library's
# bookkeeping: kept out of the signatures and out of the parameter lists.
_PRIVATE_PARAMETER = re.compile(r",\s*_\w+=[^,()]*(?:\([^()]*\))?(?=[,)])")


def _hide_private_parameters(  # noqa: PLR0917 - the signature Sphinx calls
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    annotations = app.env.temp_data.get("annotations", {}).get(name)
    if annotations:
        for key in [key for key in annotations if key.startswith("_")]:
            del annotations[key]
    if signature is None or "_" not in signature:
        return None
    signature = _PRIVATE_PARAMETER.sub("", signature)
    signature = signature.replace(", *)", ")").replace("(*)", "()")
    return signature, return_annotation


def setup(app: Sphinx) -> None:
    app.connect("source-read", _list_optional_pages)
    app.connect("autodoc-process-signature", _hide_private_parameters)
