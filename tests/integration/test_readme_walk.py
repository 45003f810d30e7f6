"""The README's "Quick start" and "Testing your models", run as a new user runs them.

Every fenced block of those two sections runs as written, in order, in a fresh temporary folder
with a fresh home folder and a shell environment holding only what a new shell has (no AWS_*
variables: the README's own exports must suffice). Only three things are arranged beforehand,
the way `make test` leaves a clone: `.venv` (a link to this environment), the provisioned Triton
under the new home's cache, and the port. The gateway listens on a free port instead of 8080
(`MME_LOCAL_PORT`, `MME_LOCAL_ENDPOINT_URL`, and `127.0.0.1:8080` in the blocks), so the walk
can't collide with anything else on the machine.

Bash blocks run one after another, each in its own `bash -e`, carrying exported variables
forward as a shell would; the block that starts `mme-local up` runs in the background until the
end, and the boto3 snippet its banner prints runs too, as printed. A Python block whose first
line is `# NAME.py` is that file's content; any other Python block runs with `.venv/bin/python`.
Each block's time is printed (`pytest -s`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mme_local.runtime.base import free_port
from mme_local.runtime.provision import runtime_cache_dir

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
SECTIONS = ("Quick start", "Testing your models")
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_FILE_HEADER = re.compile(r"\A# (\S+\.py)\n")


@dataclass(frozen=True)
class Block:
    section: str
    language: str
    text: str


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of SECTIONS, in order."""
    blocks = []
    for section in SECTIONS:
        start = text.index(f"\n## {section}\n")
        end = text.find("\n## ", start + 1)
        body = text[start : end if end != -1 else len(text)]
        blocks += [Block(section, m.group(1), m.group(2)) for m in _FENCE.finditer(body)]
    return blocks


def test_the_sections_hold_the_blocks_this_walk_expects() -> None:
    blocks = readme_blocks(README.read_text())
    languages = [(b.section, b.language) for b in blocks]
    assert ("Quick start", "bash") in languages and ("Testing your models", "python") in languages
    assert sum("mme-local up" in b.text for b in blocks) == 1, "one long-running `up` block"
    assert all(b.language in ("bash", "python") for b in blocks), languages


def _fresh_environment(home: Path, port: int) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "TERM")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    return {
        **env,
        "HOME": str(home),
        "MME_LOCAL_PORT": str(port),
        "MME_LOCAL_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }


def _run_bash(text: str, env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Run one block; returns the environment it leaves (what a shell carries forward)."""
    dump = cwd / ".env-after-block"
    script = f"{text}\nenv -0 > {dump}\n"
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"{text}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    pairs = (item.split("=", 1) for item in dump.read_text().split("\0") if "=" in item)
    return {name: value for name, value in pairs}


def _run_python(text: str, env: dict[str, str], cwd: Path) -> None:
    result = subprocess.run(
        [str(cwd / ".venv" / "bin" / "python"), "-"],
        input=text,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{text}\n{result.stdout}\n{result.stderr}"


def _banner_snippet(log: str) -> str:
    """The boto3 snippet `up` prints, which must run as printed."""
    lines = log.splitlines()
    start = lines.index("  import boto3")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("  print("))
    return textwrap.dedent("\n".join(lines[start : end + 1]))


def _wait_for_ping(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"`up` did not answer /ping:\n{log.read_text()}")


def test_quick_start_and_testing_run_as_written(tmp_path: Path) -> None:
    work, home = tmp_path / "clone", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    # What `make test` provisions: the Triton under the user's cache folder.
    provisioned = runtime_cache_dir()
    assert provisioned.is_dir(), "run `make runtime` first"
    (home / ".cache" / "mme-local").mkdir(parents=True)
    (home / ".cache" / "mme-local" / "runtime").symlink_to(provisioned)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _fresh_environment(home, port)
    server: subprocess.Popen[bytes] | None = None
    server_log = tmp_path / "up.log"
    try:
        for block in readme_blocks(README.read_text()):
            started = time.monotonic()
            text = block.text.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            if block.language == "python":
                header = _FILE_HEADER.match(text)
                if header:
                    (work / header.group(1)).write_text(text)
                    continue
                _run_python(text, env, work)
            elif "mme-local up" in text:
                with server_log.open("wb") as log:
                    server = subprocess.Popen(
                        ["bash", "-e", "-c", f"exec {text.strip()}"],
                        cwd=work,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                _wait_for_ping(url, server, server_log)
                _run_python(_banner_snippet(server_log.read_text()), env, work)
            else:
                env = _run_bash(text, env, work)
            print(f"{time.monotonic() - started:6.1f} s  {text.splitlines()[0]}")
        assert (work / "out.json").is_file(), "the AWS CLI wrote its answer"
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    assert server is not None and server.returncode == 0, server_log.read_text()
