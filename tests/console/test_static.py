"""The vendored files are their upstream releases, unchanged: the sha256 and the version
recorded in static/VENDORED.md are those of the file."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "callback_fanout" / "console" / "static"
HTMX = STATIC / "htmx.min.js"


def _htmx_record() -> str:
    """The htmx.min.js section of VENDORED.md."""
    text = (STATIC / "VENDORED.md").read_text(encoding="utf-8")
    start = text.index("## htmx.min.js")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def _field(name: str) -> str:
    found: list[str] = re.findall(rf"^- {name}: `?([^`\s]+)`?\s*$", _htmx_record(), re.MULTILINE)
    assert len(found) == 1, (name, found)
    return found[0]


def test_htmx_is_the_file_whose_sha256_is_recorded() -> None:
    recorded = _field("sha256")
    assert re.fullmatch(r"[0-9a-f]{64}", recorded)
    assert hashlib.sha256(HTMX.read_bytes()).hexdigest() == recorded


def test_the_recorded_version_is_the_one_inside_the_file() -> None:
    recorded = _field("Version")
    assert re.fullmatch(r"2\.0\.\d+", recorded)
    inside = re.findall(r"""\bversion\s*:\s*["'](\d+\.\d+\.\d+)["']""", HTMX.read_text("utf-8"))
    assert inside == [recorded]
    assert f"`htmx.org`, version {recorded}" in _htmx_record()


def test_the_recorded_meta_tag_turns_off_eval_and_the_injected_styles_with_real_keys() -> None:
    tags = re.findall(r"""<meta name="htmx-config" content='([^']*)'>""", _htmx_record())
    assert len(tags) == 1
    config = json.loads(tags[0])
    assert config == {"allowEval": False, "includeIndicatorStyles": False}
    source = HTMX.read_text("utf-8")
    assert """meta[name="htmx-config"]""" in source  # where this build reads its config
    for key in config:  # each a key of this build's defaults, on unless the page says not
        assert len(re.findall(rf"[{{,]{key}:(?:true|!0)[,}}]", source)) == 1, key


def test_the_licence_travels_with_the_file() -> None:
    record = _htmx_record()
    assert "0BSD" in record
    assert "Permission to use, copy, modify, and/or distribute this software" in record
