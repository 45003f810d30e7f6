"""What `up` warns about at start, and how it treats the signals that stop it."""

from __future__ import annotations

import signal

import pytest

from mme_local.serving import EmulatorServer, exposure_warning
from mme_local.settings import EmulatorSettings


def test_the_embedded_runtime_names_the_open_port_and_what_it_exposes() -> None:
    warning = exposure_warning(40123)
    assert warning is not None
    assert "port 40123 listens on every interface without authentication" in warning
    assert "load any folder of this host as a model" in warning


def test_a_confined_port_gets_no_warning() -> None:
    # The docker runtime on a bridge, and an external Triton, report no open port.
    assert exposure_warning(None) is None


def test_stop_signals_raise_like_ctrl_c_and_an_ignored_hangup_stays_ignored() -> None:
    server = EmulatorServer(EmulatorSettings(port=0))
    said: list[str] = []
    before = signal.getsignal(signal.SIGTERM)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with server.stopping_on_signals(said.append):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGTERM)
        assert said == ["SIGTERM: stopping, as on Ctrl-C"]
        assert signal.getsignal(signal.SIGTERM) == before
    finally:
        signal.signal(signal.SIGHUP, previous)
