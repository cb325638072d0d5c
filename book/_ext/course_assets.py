"""Page assets of the course's book: two fixes for scripts that other packages add.

1. Sphinx 7 (which Jupyter Book 1 requires) emits an inline script twice when an extension adds
   it after the builder starts (fixed upstream in sphinx-doc/sphinx#13402, Sphinx 8). The second
   copy of sphinx-thebe's `const THEBE_JS_URL` is a SyntaxError in every page. We drop exact
   duplicates from each page's script list.
2. The static widget manager typesets widget labels with MathJax 2's `MathJax.Hub.Queue`
   (jupyter-widgets/ipywidgets#3829); the book loads MathJax 3, which has no `Hub`. A small
   script, run after MathJax and before the widgets render, forwards those calls to MathJax 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

STATIC = Path(__file__).parent / "course_assets_static"
MATHJAX_PRIORITY = 500  # sphinx.ext.mathjax adds its script with the default priority


def add_static_path(app: Sphinx) -> None:
    app.config.html_static_path.append(str(STATIC))


def drop_duplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", add_static_path)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)  # after every script is added
    app.add_js_file("widgets-mathjax3.js", defer="defer", priority=MATHJAX_PRIORITY + 1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
