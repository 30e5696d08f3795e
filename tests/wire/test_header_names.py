"""Header names are written once, in ``shared.wire.headers``; the product code names them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("shared", "ingress", "workers", "callback_fanout")
HEADERS = ROOT / "shared" / "wire" / "headers.py"
#: ``x-`` names that are not message headers: the queue arguments the topology declares, and
#: a content coding.
NOT_HEADERS = {
    ROOT / "shared" / "topology.py": "queue arguments",
    ROOT / "ingress" / "body.py": "x-gzip",
}
_NAME = re.compile(r"x-[a-z0-9-]+")


def _header_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and _NAME.fullmatch(node.value)
    ]


def test_no_product_module_spells_a_header_name_but_the_headers_module() -> None:
    found = [
        literal
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != HEADERS and path not in NOT_HEADERS
        for literal in _header_literals(path)
    ]
    assert found == []


def test_the_headers_module_names_each_header_once() -> None:
    names = _header_literals(HEADERS)
    values = [name.split(": ", 1)[1] for name in names]
    assert len(values) == len(set(values)) > 0
