"""Sizes as the settings accept them for budgets (flags, mme.toml and environment alike)."""

from __future__ import annotations

import pytest

from mme_local.settings import parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000", 1000),
        ("16GiB", 16 * 1024**3),
        ("512MiB", 512 * 1024**2),
        ("2G", 2 * 1000**3),
        ("1.5 GiB", int(1.5 * 1024**3)),
        ("10kb", 10_000),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size("lots")
