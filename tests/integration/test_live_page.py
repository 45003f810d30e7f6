"""The live page in a real browser: headless Chromium renders /_mme/ from a running emulator.

Chromium (Debian's `chromium`, installed by .ci/run) loads the page, runs its scripts under a
virtual-time budget (so its one-second polling runs several times without real waiting) and
dumps the DOM it built; the test reads the rendered model table, eviction log and timeline
marks from it and compares them with `/_mme/models`. A screenshot is saved beside; set
MME_LOCAL_LIVE_SCREENSHOT to a path to keep it (docs/live-page.png is made that way).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from mme_local.background import RunningEmulator, run_in_thread
from mme_local.runtime.embedded import EmbeddedTriton
from mme_local.settings import EmulatorSettings
from tests.support import doubler_archive, kserve_body

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class RenderedPage(HTMLParser):
    """Model rows (field -> value), eviction rows (field -> text) and timeline mark titles."""

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, dict[str, str]] = {}
        self.evictions: list[dict[str, str]] = []
        self.marks: list[tuple[str, str]] = []
        self.budgets: dict[str, dict[str, str]] = {}
        self.renders = 0
        self._model: str | None = None
        self._eviction: dict[str, str] | None = None
        self._field: str | None = None
        self._mark: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.renders = int(a.get("data-renders") or 0)
        elif tag == "div" and "data-budget" in a:
            self.budgets[a["data-budget"]] = a
        elif tag == "tr" and "data-model" in a:
            self._model = a["data-model"]
            self.models[self._model] = {}
        elif tag == "tr" and "data-eviction" in a:
            self._eviction = {}
            self.evictions.append(self._eviction)
        elif tag == "td" and self._model is not None:
            self.models[self._model][a["data-field"]] = a["data-value"]
        elif tag == "td" and self._eviction is not None:
            self._field = a["data-field"]
        elif tag == "g" and a.get("class") == "mark":
            self._mark = a.get("data-kind", "")
        elif tag == "title" and self._mark is not None:
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._model = self._eviction = None
        elif tag == "td":
            self._field = None
        elif tag == "title":
            self._in_title = False
        elif tag == "g":
            self._mark = None

    def handle_data(self, data: str) -> None:
        if self._eviction is not None and self._field is not None:
            self._eviction[self._field] = self._eviction.get(self._field, "") + data
        if self._in_title and self._mark is not None:
            self.marks.append((self._mark, data))


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "install chromium (.ci/run does: apt-get install chromium)"
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # CI runs as root; the page is our own, on loopback
            "--disable-gpu",
            "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
            "--no-first-run",
            "--disable-extensions",
            "--window-size=1400,1200",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    settings = EmulatorSettings(
        port=0, cache_dir=tmp_path_factory.mktemp("cache") / "models", max_loaded_models=1
    )
    with run_in_thread(settings) as emulator:
        yield emulator


def _invoke(running: RunningEmulator, target: str) -> None:
    running.runtime_client().invoke_endpoint(
        EndpointName="local-mme", TargetModel=target, Body=kserve_body([1.0])
    )


def _wait_for_mark(url: str, kind: str, target: str | None) -> dict[str, Any]:
    """The recorder samples once a second; wait until the mark is in the timeline."""
    deadline = time.monotonic() + 30
    while True:
        state: dict[str, Any] = httpx.get(f"{url}/_mme/live/state").json()
        if any(e["kind"] == kind and e["target_model"] == target for e in state["events"]):
            return state
        assert time.monotonic() < deadline, state["events"]
        time.sleep(0.2)


def test_page_shows_models_eviction_and_numbers_of_models_view(
    running: RunningEmulator, tmp_path: Path
) -> None:
    s3 = running.s3_client()
    for name, factor in (("first.tar.gz", 2), ("second.tar.gz", 3), ("untouched.tar.gz", 4)):
        archive = doubler_archive(tmp_path, name, factor)
        s3.upload_file(str(archive), running.model_data.bucket, running.model_data.prefix + name)
    _invoke(running, "first.tar.gz")
    _invoke(running, "first.tar.gz")
    # One model at most: loading the second evicts the first.
    _invoke(running, "second.tar.gz")
    running.settle()
    _wait_for_mark(running.url, "eviction", "first.tar.gz")

    dom = _chromium("--virtual-time-budget=8000", "--dump-dom", f"{running.url}/_mme/").stdout
    page = RenderedPage()
    page.feed(dom)
    expected = httpx.get(f"{running.url}/_mme/models").json()

    assert page.renders >= 1, dom[:2000]
    assert set(page.models) == {row["target_model"] for row in expected}
    for row in expected:
        shown = page.models[row["target_model"]]
        for field in ("state", "invocations", "loads", "unloads", "disk_bytes", "memory_bytes"):
            if row[field] is None:  # held by no model that is not loaded: blank or 0
                assert shown[field] in ("", "0"), (row["target_model"], field, shown)
            else:
                assert shown[field] == str(row[field]), (row["target_model"], field, shown)
    assert page.models["first.tar.gz"]["cold_starts"] == "1"
    assert page.models["second.tar.gz"]["state"] == "loaded"
    # The budget bars: used and reserved (nothing in flight once settled) against the limit.
    status = httpx.get(f"{running.url}/_mme/status").json()
    count = page.budgets["loaded models"]
    assert (count["data-used"], count["data-reserved"], count["data-limit"]) == ("1", "0", "1")
    disk = page.budgets["disk"]
    assert (disk["data-used"], disk["data-reserved"]) == (str(status["disk_bytes"]), "0")
    assert page.budgets["host memory"]["data-reserved"] == "0"
    assert 'data-key="gpu_memory_bytes"' not in dom  # no GPU measured here: no GPU column
    assert not any(name.startswith("GPU") for name in page.budgets)

    evictions = httpx.get(f"{running.url}/_mme/evictions").json()
    assert [e["target_model"] for e in page.evictions] == [
        e["target_model"] for e in reversed(evictions)
    ]
    assert page.evictions[0]["reason"] == "max loaded models (1)"
    hover = [text for kind, text in page.marks if kind == "eviction"]
    assert any("first.tar.gz" in text and "max loaded models (1)" in text for text in hover)
    assert any(kind == "load" for kind, _ in page.marks)

    # Sorted and filtered as a link asks (the same state the heading clicks and the box set).
    dom = _chromium(
        "--virtual-time-budget=4000", "--dump-dom", f"{running.url}/_mme/?sort=-invocations"
    ).stdout
    page = RenderedPage()
    page.feed(dom)
    assert list(page.models) == ["first.tar.gz", "second.tar.gz", "untouched.tar.gz"]
    dom = _chromium(
        "--virtual-time-budget=4000", "--dump-dom", f"{running.url}/_mme/?filter=SECOND"
    ).stdout
    page = RenderedPage()
    page.feed(dom)
    assert list(page.models) == ["second.tar.gz"]

    screenshot = tmp_path / "live-page.png"
    _chromium("--virtual-time-budget=8000", f"--screenshot={screenshot}", f"{running.url}/_mme/")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("MME_LOCAL_LIVE_SCREENSHOT")
    if keep:
        shutil.copyfile(screenshot, keep)


def test_budgets_show_what_a_load_in_flight_reserves(tmp_path: Path) -> None:
    """A model reloading holds the memory it measured at its last load, and counts against the
    count budget, until its load ends; the model it replaces is being unloaded meanwhile."""
    settings = EmulatorSettings(port=0, cache_dir=tmp_path / "cache", max_loaded_models=1)
    with run_in_thread(settings) as running:
        s3 = running.s3_client()
        for name in ("slow.tar.gz", "other.tar.gz"):
            # `slow` takes 2 s to load: long enough to watch its load from outside.
            archive = doubler_archive(tmp_path, name, load_delay_s=2.0 if name[0] == "s" else 0)
            s3.upload_file(
                str(archive), running.model_data.bucket, running.model_data.prefix + name
            )
        _invoke(running, "slow.tar.gz")
        _invoke(running, "other.tar.gz")  # `slow` is evicted
        running.settle()
        slow = next(
            row
            for row in httpx.get(f"{running.url}/_mme/models").json()
            if row["target_model"] == "slow.tar.gz"
        )
        assert slow["state"] == "on disk" and slow["last_memory_bytes"] > 0
        reloading = threading.Thread(target=_invoke, args=(running, "slow.tar.gz"))
        reloading.start()
        try:
            deadline = time.monotonic() + 30
            while True:
                state = httpx.get(f"{running.url}/_mme/live/state").json()
                bars = {b["name"]: b for b in state["budgets"]}
                if bars["loaded models"]["reserved"] == 1:
                    break
                assert time.monotonic() < deadline, bars
                time.sleep(0.05)
        finally:
            reloading.join(timeout=60)
        assert bars["loaded models"]["limit"] == 1
        assert bars["host memory"]["reserved"] == slow["last_memory_bytes"]
        settled = {
            b["name"]: b for b in httpx.get(f"{running.url}/_mme/live/state").json()["budgets"]
        }
        assert (settled["loaded models"]["used"], settled["loaded models"]["reserved"]) == (1, 0)
        assert settled["host memory"]["reserved"] == 0


@contextlib.contextmanager
def _serving(views: Any) -> Iterator[str]:
    """A gateway whose only real part is `views`, served by uvicorn on loopback."""
    import uvicorn

    from mme_local.gateway.app import Gateway, create_app
    from tests.unit.test_gateway import FakeAdmin, FakeService

    gateway = Gateway(FakeService(ValueError()), FakeAdmin(), live=[views])  # type: ignore[arg-type]
    server = uvicorn.Server(
        uvicorn.Config(create_app(lambda: gateway), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def thousand_models() -> Iterator[str]:
    """The live views of 1,000 models (a real `CacheMachine` holding them); no Triton or S3
    needed to render them."""
    from tests.unit.test_live_page import FakeStore, _thousand, _views

    cache, recorder = _thousand(1000)
    recorder.sample(time.time())
    with _serving(_views(cache, FakeStore([]), recorder)) as url:
        yield url


def test_gpu_memory_shows_per_model_and_per_gpu_where_gpus_are_measured() -> None:
    """No GPU here: the cache's state machine tracks GPU memory as it would with one, and the
    recorder's GPU probe answers two GPUs."""
    from mme_local.cache.policy import Budgets
    from mme_local.gateway.live_recorder import LiveRecorder
    from tests.unit.test_live_page import MIB, FakeCache, FakeStore, _drive_to_loaded, _views

    cache = FakeCache(budgets=Budgets(None, None, None, 1 << 30, 24 << 30), track_gpu=True)
    _drive_to_loaded(cache.machine, 1, "big.tar.gz", MIB, 300 * MIB, 5 << 30)
    _drive_to_loaded(cache.machine, 2, "small.tar.gz", MIB, 200 * MIB, 700 * MIB)
    recorder = LiveRecorder(
        cache,  # type: ignore[arg-type]
        restarts=lambda: 0.0,
        runtime_running=lambda: True,
        host_memory=lambda: 2 << 30,
        gpu_memory=lambda: [6 << 30, 1 << 30],
    )
    asyncio.run(recorder.measure())
    recorder.sample(time.time())
    with _serving(_views(cache, FakeStore([]), recorder)) as url:
        dom = _chromium("--virtual-time-budget=4000", "--dump-dom", f"{url}/_mme/").stdout
    page = RenderedPage()
    page.feed(dom)
    assert page.models["big.tar.gz"]["gpu_memory_bytes"] == str(5 << 30)
    assert page.models["small.tar.gz"]["gpu_memory_bytes"] == str(700 * MIB)
    assert 'data-key="gpu_memory_bytes"' in dom  # the column is shown
    gpus = {name: bar for name, bar in page.budgets.items() if name.startswith("GPU")}
    assert {name: bar["data-used"] for name, bar in gpus.items()} == {
        "GPU 0 memory": str(6 << 30),
        "GPU 1 memory": str(1 << 30),
    }
    assert gpus["GPU 0 memory"]["data-limit"] == str(24 << 30)


def test_a_thousand_models_render_one_page_of_rows(thousand_models: str) -> None:
    """Sorting and filtering run over every row; only one page of 100 reaches the DOM."""
    dom = _chromium(
        "--virtual-time-budget=4000", "--dump-dom", f"{thousand_models}/_mme/?sort=target_model"
    ).stdout
    page = RenderedPage()
    page.feed(dom)
    assert page.renders >= 1, dom[:2000]
    assert list(page.models) == [f"tenant-{i:05d}/bert-base-uncased.tar.gz" for i in range(100)]
    info = re.search(r'<span id="page-info" class="muted">([^<]*)</span>', dom)
    assert info is not None and info.group(1) == "1\u2013100 of 1000"
    assert re.search(r'data-render-ms="[0-9.]+"', dom)
    dom = _chromium(
        "--virtual-time-budget=4000",
        "--dump-dom",
        f"{thousand_models}/_mme/?filter=tenant-0099&sort=-target_model",
    ).stdout
    page = RenderedPage()
    page.feed(dom)
    assert list(page.models) == [
        f"tenant-{i:05d}/bert-base-uncased.tar.gz" for i in range(999, 989, -1)
    ]


def test_page_and_views_are_read_only_gets(running: RunningEmulator) -> None:
    page = httpx.get(f"{running.url}/_mme/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # Self-contained: no stylesheet, script or image is fetched from anywhere.
    assert "<link" not in page.text and " src=" not in page.text
    assert httpx.get(f"{running.url}/_mme", follow_redirects=False).status_code == 308
    assert httpx.post(f"{running.url}/_mme/live/state").status_code == 405


def test_capacity_report_renders_offline_with_the_chosen_candidate(tmp_path: Path) -> None:
    from mme_local.capacity.html_report import write_html
    from tests.unit.test_capacity_html import _plan

    plan, workload, prof = _plan()
    path = tmp_path / "plan.html"
    write_html(plan, workload, prof, path)
    dom = _chromium("--virtual-time-budget=3000", "--dump-dom", path.as_uri()).stdout
    assert 'data-rendered="yes"' in dom
    chosen = re.findall(r'<tr data-candidate="([^"]+)" class="chosen">', dom)
    assert plan.cheapest is not None
    assert chosen == [plan.cheapest.candidate.label]
    assert dom.count("<tr data-candidate=") == len(plan.outcomes)
    assert 'data-chart="timeline"' in dom and 'class="mark" data-kind="eviction"' in dom


def test_a_runtime_restart_shows_in_the_page(tmp_path: Path) -> None:
    settings = EmulatorSettings(port=0, cache_dir=tmp_path / "cache")
    with run_in_thread(settings) as running:
        archive = doubler_archive(tmp_path, "steady.tar.gz")
        running.s3_client().upload_file(
            str(archive), running.model_data.bucket, running.model_data.prefix + "steady.tar.gz"
        )
        _invoke(running, "steady.tar.gz")
        server = running.emulator.server
        assert isinstance(server, EmbeddedTriton) and server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        state = _wait_for_mark(running.url, "runtime restart", None)
        assert state["restarts"][0]["kind"] in ("runtime down", "runtime restart")
        dom = _chromium("--virtual-time-budget=4000", "--dump-dom", f"{running.url}/_mme/").stdout
    restarts = re.search(r'<ul class="plain" id="restarts">(.*?)</ul>', dom, re.S)
    assert restarts is not None and "runtime restart: 1 restart attempt(s)" in restarts.group(1)
