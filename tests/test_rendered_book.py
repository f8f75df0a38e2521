"""The built book as a student opens it: from disk, with no network, in a 1280 px window.

Checks every page of ``_build/html`` for scripts or stylesheets from outside
the book, then opens each chapter in headless Chromium with every request
outside the book refused and checks that MathJax (served from the book)
typeset every formula and that no code or output cell is wider than the page
(a cell that scrolls sideways hides the column the prose talks about). A
full-page screenshot of each chapter goes to ``_build/screenshots/``.

It needs the built book: ``make book-check`` (part of ``make test``) runs it
after ``make book-strict`` with ``PGGAN_BOOK_HTML`` set; a plain ``pytest tests/``
skips it.
"""

import html.parser
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HTML_ENV = os.environ.get("PGGAN_BOOK_HTML")
HTML = (REPO / HTML_ENV) if HTML_ENV else None
SCREENSHOTS = REPO / "_build" / "screenshots"
#: A common laptop window; the text column then shows 77 monospace characters.
VIEWPORT = {"width": 1280, "height": 800}

pytestmark = pytest.mark.skipif(
    HTML is None, reason="runs after the book build: `make book-check` (part of `make test`)")


def _chapters():
    toc = (REPO / "_toc.yml").read_text()
    return re.findall(r"file:\s*(chapters/\S+)", toc)


class _Resources(html.parser.HTMLParser):
    """Collects ``<script src>`` and ``<link rel=stylesheet href>`` of one page."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.found.append(attrs["src"])
        elif tag == "link" and "stylesheet" in (attrs.get("rel") or "") and attrs.get("href"):
            self.found.append(attrs["href"])


def _is_external(url: str) -> bool:
    return bool(re.match(r"^([a-z][a-z0-9+.-]*:|//)", url, re.I)) and not url.startswith("file:")


@pytest.fixture(scope="module")
def html_dir():
    if not (HTML / "index.html").exists():
        pytest.fail(f"PGGAN_BOOK_HTML={HTML_ENV}: no built book there (run `make book-strict`)")
    return HTML


def test_no_page_loads_a_script_or_stylesheet_from_outside_the_book(html_dir):
    outside = {}
    pages = sorted(html_dir.rglob("*.html"))
    assert len(pages) >= len(_chapters()) + 1
    for page in pages:
        parser = _Resources()
        parser.feed(page.read_text(encoding="utf-8"))
        external = [url for url in parser.found if _is_external(url)]
        if external:
            outside[str(page.relative_to(html_dir))] = external
    assert not outside, f"pages that need the network: {outside}"
    css = [p for p in html_dir.rglob("*.css")
           if re.search(r"(url\(|@import)\s*['\"]?(https?:)?//", p.read_text(errors="ignore"))]
    assert not css, f"stylesheets that fetch from outside the book: {css}"
    mathjax = html_dir / "_static" / "mathjax" / "tex-chtml.js"
    assert mathjax.stat().st_size > 100_000, "MathJax is not inside the book"


def _open_offline(browser, path: Path):
    """A page opened from disk; every request that is not a file of the book is refused."""
    page = browser.new_page(viewport=VIEWPORT)
    refused = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith("file:") or url.startswith("data:") or url.startswith("blob:"):
            request_route.continue_()
        else:
            refused.append(url)
            request_route.abort()

    page.route("**/*", route)
    page.goto(path.as_uri(), wait_until="load")
    return page, refused


_MATH_STATE = """async () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
        await MathJax.startup.promise;
    }
    const math = [...document.querySelectorAll('.math')];
    return {
        formulas: math.length,
        typeset: math.filter(m => m.querySelector('mjx-container')).length,
        errors: document.querySelectorAll('mjx-merror').length,
    };
}"""

_OVERFLOW = """() => {
    const cells = document.querySelectorAll(
        'div.cell_input pre, div.cell_output pre, div.cell_output > div, div.cell_output table');
    const wide = [];
    for (const el of cells) {
        if (el.scrollWidth > el.clientWidth + 1) {
            const kind = el.closest('div.cell_input') ? 'code' : 'output';
            const lines = (el.innerText || '').split('\\n');
            const widest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
            wide.push(`${kind} cell, ${el.scrollWidth} px in ${el.clientWidth} px: ` +
                      JSON.stringify(widest.slice(0, 100)));
        }
    }
    return wide;
}"""


@pytest.mark.parametrize("chapter", _chapters())
def test_chapter_renders_offline_and_fits_the_page(html_dir, chromium, chapter):
    path = html_dir / f"{chapter}.html"
    assert path.exists(), f"{chapter} is in _toc.yml but not in the built book"
    page, refused = _open_offline(chromium, path)
    try:
        math = page.evaluate(_MATH_STATE)
        wide = page.evaluate(_OVERFLOW)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{Path(chapter).name}.png"), full_page=True)
    finally:
        page.close()
    assert not refused, f"{chapter} asked for {refused}"
    assert math["typeset"] == math["formulas"] and not math["errors"], (
        f"{chapter}: MathJax typeset {math['typeset']} of {math['formulas']} formulas "
        f"({math['errors']} TeX errors)")
    assert not wide, f"{chapter}: cells wider than the page at {VIEWPORT['width']} px:\n" + \
        "\n".join(wide)
