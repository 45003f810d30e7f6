"""Hourly prices per instance type: the dated table shipped in `prices.toml`, or the user's."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mme_local.capacity.errors import CapacityError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_TABLE = Path(__file__).with_name("prices.toml")


@dataclass(frozen=True)
class PriceTable:
    source: str
    region: str
    as_of: str
    currency: str
    prices: dict[str, float]
    verified: frozenset[str] = frozenset()
    """Instance types whose price comes from a user's file or a table marked checked
    (`verified = true`); the rest are unverified and said so wherever they are shown."""

    def hourly(self, instance_type: str) -> float | None:
        return self.prices.get(instance_type)

    def is_verified(self, instance_type: str) -> bool:
        return instance_type in self.verified

    def describe(self) -> str:
        return f"{self.currency}/h on-demand, {self.region}, as of {self.as_of} ({self.source})"


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise CapacityError(f"price table {path} is not readable ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise CapacityError(f"price table {path} is not valid TOML: {error}") from None


def _prices(data: dict[str, Any], path: Path) -> dict[str, float]:
    table = data.get("prices", {})
    if not isinstance(table, dict) or not all(
        isinstance(v, (int, float)) and v >= 0 for v in table.values()
    ):
        raise CapacityError(
            f'price table {path} needs a [prices] table of "instance type" = dollars per hour'
        )
    return {str(k): float(v) for k, v in table.items()}


def _verified(data: dict[str, Any], path: Path, default: bool) -> bool:
    flag = data.get("verified", default)
    if not isinstance(flag, bool):
        raise CapacityError(f"price table {path}: verified must be true or false")
    return flag


def load_prices(override: Path | None = None) -> PriceTable:
    """The shipped table, with the override file's prices (and its source, region, date) on top.

    The shipped table's prices count as unverified unless it says `verified = true`; a user's
    file counts as verified (its own figures) unless it says `verified = false`.
    """
    base = _read(DEFAULT_TABLE)
    prices = _prices(base, DEFAULT_TABLE)
    verified = set(prices) if _verified(base, DEFAULT_TABLE, default=False) else set()
    meta = {k: str(base[k]) for k in ("source", "region", "as_of", "currency")}
    if override is not None:
        data = _read(override)
        theirs = _prices(data, override)
        prices.update(theirs)
        if _verified(data, override, default=True):
            verified |= set(theirs)
        else:
            verified -= set(theirs)
        meta.update({k: str(data[k]) for k in meta if k in data})
        if "source" not in data:
            meta["source"] = str(override)
    return PriceTable(prices=prices, verified=frozenset(verified), **meta)
