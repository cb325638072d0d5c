"""Page assets of the course's book: its own copies of the scripts it loads, and two fixes.

0. The pages load RequireJS, the static widget manager and MathJax from `_static/vendor`, never
   from a CDN (some readers' networks block them, and a downloaded copy of the site must work
   offline). `make book` installs the npm packages pinned in book/vendor/package-lock.json; this
   extension copies the files the pages need into `_static/vendor/<name>@<version>/`, and fails
   the build when a script that `_config.yml` names is not among them (a version bumped in one
   place only, or npm never run).

1. Sphinx 7 (which Jupyter Book 1 requires) emits an inline script twice when an extension adds
   it after the builder starts (fixed upstream in sphinx-doc/sphinx#13402, Sphinx 8). The second
   copy of sphinx-thebe's `const THEBE_JS_URL` is a SyntaxError in every page. We drop exact
   duplicates from each page's script list.
2. The static widget manager typesets widget labels with MathJax 2's `MathJax.Hub.Queue`
   (jupyter-widgets/ipywidgets#3829); the book loads MathJax 3, which has no `Hub`. A small
   script, run after MathJax and before the widgets render, forwards those calls to MathJax 3.
3. In the PDF, Sphinx numbers every chapter, front matter included, so chapter 1 would be
   chapter 8 and its equations (8.1). As on the web, only the course's chapters are numbered,
   from 1: the front and back matter are set as unnumbered chapters.
4. Colab renders a notebook's raw MyST, so every solution in the notebooks sits inside an HTML
   `<details>` element that Colab (and JupyterLab) folds. The book has its own dropdowns: the
   two wrapper lines are dropped from every page.
5. Accessibility (issue 16), checked by axe-core in the browser tests:
   - MyST-NB names its "Show code cell source" toggles "Toggle hidden content" (an aria-label
     that a speech-input user cannot say, since it is not the visible text): the label goes, and
     the visible text names the toggle.
   - Docutils 0.21 marks the citation list role=list and its entries role=doc-biblioentry, which
     is not a list item; the entries become role=listitem.
   - widgets-a11y.js names the widget controls and makes sliders announce the value shown and
     toggles their state; course-a11y.css draws a focus ring on them and darkens links inside
     admonitions to 4.5:1 contrast (each file says why).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

STATIC = Path(__file__).parent / "course_assets_static"
NODE_MODULES = Path(__file__).parents[1] / "vendor" / "node_modules"
# What each npm package brings to the pages. MathJax fetches its fonts and any TeX extension, menu
# or speech module it needs at run time, relative to its own script; the other combined bundles
# and the SVG output are never asked for.
VENDORED = {
    "requirejs": ["require.js"],
    "@jupyter-widgets/html-manager": ["dist/embed-amd.js", "dist/*.woff2", "dist/*.woff", "dist/*.ttf", "dist/*.eot", "dist/*.svg"],
    "mathjax": ["es5/tex-mml-chtml.js", "es5/a11y", "es5/adaptors", "es5/input", "es5/output/chtml", "es5/sre", "es5/ui"],
}
MATHJAX_PRIORITY = 500  # sphinx.ext.mathjax adds its script with the default priority


def add_static_path(app: Sphinx) -> None:
    app.config.html_static_path.append(str(STATIC))


def vendored_files() -> dict[str, Path]:
    """{path under _static: installed file} for every file of VENDORED."""
    files = {}
    for name, patterns in VENDORED.items():
        package = NODE_MODULES / name
        if not (package / "package.json").is_file():
            raise ExtensionError(f"{package} is missing: run `npm ci` in book/vendor (`make book` does)")
        version = json.loads((package / "package.json").read_text())["version"]
        for pattern in patterns:
            matches = sorted(package.glob(pattern))
            if not matches:
                raise ExtensionError(f"{name}@{version} has no {pattern}")
            for match in matches:
                for file in [match] if match.is_file() else sorted(p for p in match.rglob("*") if p.is_file()):
                    files[f"vendor/{name}@{version}/{file.relative_to(package).as_posix()}"] = file
    return files


def local_scripts(app: Sphinx) -> list[str]:
    """The scripts under _static/vendor that the configuration asks the pages to load."""
    scripts = [app.config.mathjax_path, *app.config.nb_ipywidgets_js]
    return [s for s in scripts if s.startswith("vendor/")]


def check_vendored(app: Sphinx) -> None:
    """Fail before reading any page when a configured script is not an installed file."""
    if app.builder.format != "html":
        return
    files = vendored_files()
    for script in local_scripts(app):
        if script not in files:
            raise ExtensionError(
                f"_config.yml asks for _static/{script}, which the npm packages of book/vendor do not "
                f"provide (installed: {', '.join(sorted({p.split('/')[1] for p in files}))})"
            )


def copy_vendored(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    for target, source in vendored_files().items():
        destination = static / target
        if not destination.exists() or destination.stat().st_mtime < source.stat().st_mtime:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


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


UNNUMBERED = "\\setcounter{secnumdepth}{-1}\n"
NUMBERED = "\\setcounter{secnumdepth}{2}\\setcounter{chapter}{0}\n"  # as \\chapter and \\section


def number_only_the_chapters(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """In the LaTeX book, number the documents under chapters/ from 1, and no others."""
    if app.builder.name != "latex":
        return
    doctree.insert(0, nodes.raw("", UNNUMBERED, format="latex"))  # the root document: the intro
    numbered = False
    for start in list(doctree.findall(addnodes.start_of_file)):
        in_chapters = start["docname"].startswith("chapters/")
        if in_chapters != numbered:
            start.insert(0, nodes.raw("", NUMBERED if in_chapters else UNNUMBERED, format="latex"))
            numbered = in_chapters


SOLUTION_FOLD = ("<details><summary>Show the solution</summary>", "</details>")


def drop_solution_folds(app: Sphinx, doctree: nodes.document) -> None:
    """Remove the raw HTML lines that fold a solution in Colab; the book folds it itself."""
    for node in list(doctree.findall(nodes.raw)):
        if node.get("format") == "html" and node.astext().strip() in SOLUTION_FOLD:
            node.parent.remove(node)


# What MyST-NB and docutils write, and what it becomes (see 5. above).
ACCESSIBLE_BODY = {
    '<summary aria-label="Toggle hidden content">': "<summary>",
    'class="citation" id="': 'class="citation" role="listitem" id="',
    ' role="doc-biblioentry">': ">",
}


def accessible_body(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Rewrite the page body's toggles and citation entries as in ACCESSIBLE_BODY."""
    body = context.get("body")
    if body:
        for written, accessible in ACCESSIBLE_BODY.items():
            body = body.replace(written, accessible)
        context["body"] = body


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", add_static_path)
    app.connect("builder-inited", check_vendored)
    app.connect("build-finished", copy_vendored)
    app.connect("doctree-read", drop_solution_folds)
    app.connect("doctree-resolved", number_only_the_chapters)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)  # after every script is added
    app.connect("html-page-context", accessible_body)
    app.add_js_file("widgets-mathjax3.js", defer="defer", priority=MATHJAX_PRIORITY + 1)
    app.add_js_file("widgets-a11y.js", defer="defer")
    app.add_css_file("course-a11y.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
