"""`--help` as a user reads it: every default shown, whole sentences, one name per flag."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from mme_local.settings import EmulatorSettings

CLI = str(Path(sys.executable).parent / "mme-local")


def _help(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "250", "TERM": "dumb", "NO_COLOR": "1"}
    result = subprocess.run(
        [CLI, *command, "--help"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_up_help_shows_the_settings_defaults_and_no_broken_sentences() -> None:
    text = _help("up")
    defaults = EmulatorSettings.model_fields
    for flag, field in (
        ("--host", "host"),
        ("--port", "port"),
        ("--endpoint-name", "endpoint_name"),
        ("--runtime", "runtime"),
        ("--instance-type", "instance_type"),
        ("--model-ready-timeout", "model_ready_timeout_s"),
        ("--max-concurrency", "max_concurrency"),
    ):
        line = next(line for line in text.splitlines() if f" {flag} " in line)
        assert f"[default: ({defaults[field].default})]" in line, line
    assert "[default: (64KiB)]" in text
    # A bracket swallowed by the help renderer leaves a space before the full stop.
    assert not re.search(r"\w \.", text), text
    assert "--log-level" in text and "debug, info" in text


def test_every_command_names_the_s3_flag_alike() -> None:
    for command in (("up",), ("package",), ("capacity", "profile")):
        assert "--s3-endpoint,--s3-endpoint-url " in _help(*command), command
