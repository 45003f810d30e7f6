"""The one error type of capacity planning; its text is a complete message for the user."""

from __future__ import annotations


class CapacityError(ValueError):
    """Bad input to `mme-local capacity`: the text says what is wrong and what to do."""
