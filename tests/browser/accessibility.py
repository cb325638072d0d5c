"""axe-core, the accessibility checker, run inside a page the browser tests have open (issue 16).

`audit(page)` injects axe-core (pinned in tests/browser/package.json, installed by
`make test-browser`) and runs WCAG 2.1 A and AA and axe's best-practice rules on the page, or on
one widget. It returns every serious or critical violation, one line each, less THEME_EXCEPTIONS.

From a file:// page (test_offline) axe cannot read the stylesheets, so the few rules that need
them (such as css-orientation-lock) are skipped there; test_pages runs them all over HTTP.

An exception may only cover the theme's own controls: a violation it matches inside the page's
article (the course's own content) is still reported, with a note that an exception tried to hide it.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
FAILING = ["serious", "critical"]
COURSE_CONTENT = "article.bd-article"

# (axe rule, CSS selector, why it is allowed). Both are pydata-sphinx-theme 0.17.1 controls, in the
# header that sphinx-book-theme 1.3.0 draws on every page. Written as the upstream report would be:
THEME_EXCEPTIONS = [
    (
        "label-content-name-mismatch",
        ".search-button-field.search-button__button",
        # pydata-sphinx-theme: the search field button shows "Search" and the shortcut "Ctrl+K",
        # and its aria-label is "Search"; axe wants the accessible name to contain the whole
        # visible text (WCAG 2.5.3 Label in Name). Expected: aria-hidden="true" on the shortcut's
        # <span>, or no aria-label. Both buttons are drawn on every page, twice for search (the
        # header and the collapsed sidebar).
        "theme: the search button's aria-label leaves out its visible shortcut hint",
    ),
    (
        "label-content-name-mismatch",
        ".theme-switch-button",
        # pydata-sphinx-theme: the colour-mode button holds three icons whose titles ("Light",
        # "Dark", "System Settings") count as its text, and its aria-label is "Color mode", which
        # contains none of them. Expected: aria-hidden="true" on the three <i> icons.
        "theme: the colour-mode button's icon titles are not in its aria-label",
    ),
]

AUDIT = """async ([scope, rules, failing, exceptions, content]) => {
  const root = scope ? document.querySelector(scope) : document;
  const result = await axe.run(root, {
    runOnly: {type: 'tag', values: rules}, resultTypes: ['violations'], elementRef: true,
    preload: location.protocol !== 'file:',  // from file:// the browser refuses axe's stylesheet reads
  });
  const found = [], used = new Set();
  for (const rule of result.violations) {
    if (!failing.includes(rule.impact)) continue;
    for (const node of rule.nodes) {
      const excuse = exceptions.findIndex(([id, selector]) => id === rule.id && node.element.matches(selector));
      const inContent = node.element.closest(content) !== null;
      if (excuse >= 0 && !inContent) {
        used.add(excuse);
        continue;
      }
      const why = node.failureSummary.split('\\n').slice(1).join(' ').trim();
      const note = excuse >= 0 ? ' [a theme exception matches this course element]' : '';
      found.push(`${rule.id} (${rule.impact}) at ${node.target.join(' ')}: ${why}${note}`);
    }
  }
  return {found, used: [...used]};
}"""


def run_axe(page: Page, scope: str | None = None) -> dict[str, list]:
    """{"found": violations left, one line each; "used": indices of the THEME_EXCEPTIONS that excused one}."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    exceptions = [[rule, selector] for rule, selector, _ in THEME_EXCEPTIONS]
    return page.evaluate(AUDIT, [scope, RULES, FAILING, exceptions, COURSE_CONTENT])


def audit(page: Page, scope: str | None = None) -> list[str]:
    """Serious and critical axe violations on the page, or inside the element `scope` selects."""
    return run_axe(page, scope)["found"]
