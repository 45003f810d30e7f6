"""Self-contained pages from the files in `static/`: styles and scripts inlined, no network.

The live page and `capacity plan --html` are built the same way, from the same stylesheet
and chart code, so the two look and read alike.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def asset(name: str) -> str:
    return (resources.files("mme_local.gateway") / "static" / name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    # Inside <script>, only "</" can end the element early; "<\/" means the same to JS.
    return text.replace("</", "<\\/")


def inline_page(template: str, scripts: list[str], data: Any = None) -> str:
    """`template` with page.css, the named scripts and (if given) `data` as JSON filled in."""
    page = asset(template)
    page = page.replace("/*STYLE*/", asset("page.css"), 1)
    page = page.replace("/*SCRIPT*/", _script_safe("\n".join(asset(s) for s in scripts)), 1)
    if data is not None:
        page = page.replace("/*DATA*/", _script_safe(json.dumps(data)), 1)
    return page
