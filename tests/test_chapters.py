"""The committed chapters, read as files: no outputs, and code that fits the page.

The rendered check (``tests/test_rendered_book.py``) measures the built pages
in Chromium; this one catches the same faults in a second, before any build.
"""

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((REPO / "chapters").glob("*.ipynb"))
#: Monospace characters that the book's text column shows at a 1280 px window
#: (77 measured in Chromium), less one for the scroll bar's margin.
MAX_COLUMNS = 76


def test_every_chapter_is_in_the_table_of_contents():
    toc = set(re.findall(r"file:\s*chapters/(\S+)", (REPO / "_toc.yml").read_text()))
    assert {path.stem for path in CHAPTERS} == toc


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_committed_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    with_outputs = [i for i, cell in enumerate(cells) if cell["cell_type"] == "code"
                    and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not with_outputs, f"{path.name}: cells {with_outputs} carry outputs"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_code_lines_fit_the_page(path):
    cells = json.loads(path.read_text())["cells"]
    wide = [f"cell {i}: {line!r}" for i, cell in enumerate(cells) if cell["cell_type"] == "code"
            for line in "".join(cell["source"]).splitlines() if len(line) > MAX_COLUMNS]
    assert not wide, (f"{path.name}: {len(wide)} code lines longer than {MAX_COLUMNS} "
                      "characters:\n" + "\n".join(wide))
