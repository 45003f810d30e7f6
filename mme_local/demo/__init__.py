"""`mme-local demo`: many copies of a real BERT served with evictions, checked against an LRU.

One module per job: `workload` (which model each request names), `oracle` (the expected
counts), `encoder` (sentences in, embeddings out), `counts` (the emulator's metrics), `disk`
(the free space the run needs), `report` (the verdict and its table), `run` (all of it in order).
"""

from mme_local.demo.config import DemoConfig, DemoError
from mme_local.demo.report import DemoReport
from mme_local.demo.run import run_demo

__all__ = ["DemoConfig", "DemoError", "DemoReport", "run_demo"]
