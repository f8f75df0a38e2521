"""Every ``Notebook:`` back-link in the library names a chapter that uses the function.

A function (or class) is used by a chapter when the chapter's code names it;
a class also when the chapter calls one of its public methods (``.embed(``).
"""

import ast
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"Notebook: chapters/(\S+\.ipynb)")
# Method names too common to say which class a chapter uses.
GENERIC_METHODS = {"call", "build", "get_config", "from_config", "summary", "close", "update",
                   "write", "read", "run", "to_dict", "from_dict"}


def chapter_code() -> dict[str, str]:
    return {path.name: "\n".join("".join(cell["source"])
                                 for cell in json.loads(path.read_text())["cells"]
                                 if cell["cell_type"] == "code")
            for path in sorted((REPO / "chapters").glob("*.ipynb"))}


def used_names(node) -> list[str]:
    """Patterns that count as a use of ``node`` (a function or class definition)."""
    patterns = [rf"\b{re.escape(node.name)}\b"]
    if isinstance(node, ast.ClassDef):
        patterns += [rf"\.{re.escape(item.name)}\(" for item in node.body
                     if isinstance(item, ast.FunctionDef) and not item.name.startswith("_")
                     and item.name not in GENERIC_METHODS]
    return patterns


def back_links():
    """``(file, definition node, linked chapter)`` for every back-link in pggan_lib."""
    for path in sorted((REPO / "pggan_lib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                match = LINK.search(ast.get_docstring(node, clean=False) or "")
                if match:
                    yield path.relative_to(REPO), node, match.group(1)


def users(node, code: dict[str, str]) -> list[str]:
    patterns = [re.compile(p) for p in used_names(node)]
    return [name for name, source in code.items() if any(p.search(source) for p in patterns)]


def test_every_back_link_names_a_chapter_that_uses_it():
    code = chapter_code()
    links = list(back_links())
    assert len(links) > 50  # the check reads the library's docstrings
    wrong = [f"{path}: {node.name} links {chapter}, used by {users(node, code) or 'no chapter'}"
             for path, node, chapter in links if chapter not in users(node, code)]
    assert wrong == [], "\n".join(wrong)


def test_the_check_can_fail():
    code = {"01_x.ipynb": "from pggan_lib import audio\naudio.load_audio(p)\nclf.embed(x)"}
    tree = ast.parse("def load_audio():\n    pass\ndef save_audio():\n    pass\n"
                     "class Classifier:\n    def embed(self):\n        pass\n")
    load, save, cls = tree.body
    assert users(load, code) == ["01_x.ipynb"] and users(save, code) == []
    assert users(cls, code) == ["01_x.ipynb"]
