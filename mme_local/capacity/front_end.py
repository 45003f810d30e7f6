"""How Triton's SageMaker front end makes invocations wait for loads and unloads.

Two stalls, both in `src/sagemaker_server.cc`:

- From Triton 2.64 (the 25.11 container) the unload handler holds the model-list mutex for
  the whole unload, including its wait for the model to become unavailable, and every invoke
  takes the same mutex (commits f3bdcc7, d697e8d on main, released in 2.65; cherry-picked
  into the r25.11 branch as d16d573, 069046b before its v2.64.0 tag): while any model
  unloads, every request on the instance waits.
- In every version the front end runs a load or unload synchronously on the worker thread
  that received it, and an invoke whose connection sits on that thread waits for it. How
  often that hits depends on how the platform's connections are spread over the workers,
  which is unknown: on the embedded Triton 2.51 a hot model stalled for 6 of 7 other models'
  loads and unloads (libevhtp gives new connections to the first idle worker, so nearly all
  share one), and that is the default share.
"""

from __future__ import annotations

from mme_local.capacity.errors import CapacityError

DEFAULT_TRITON_VERSION = "24.09"
"""The container `deploy` uses unless told otherwise."""
UNLOAD_BLOCKS_FROM = (25, 11)
DEFAULT_STALL_SHARE = 6 / 7


def release(version: str) -> tuple[int, int]:
    """'24.09' -> (24, 9): Triton container releases are YY.MM."""
    try:
        year, month = version.split(".")[:2]
        return int(year), int(month)
    except ValueError:
        raise CapacityError(f"--triton-version {version!r} is not a release like 24.09") from None


def unload_blocks_invokes(version: str) -> bool:
    """Whether every invocation waits while a model unloads in this container release."""
    return release(version) >= UNLOAD_BLOCKS_FROM
