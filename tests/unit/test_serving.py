"""What `up` warns about at start."""

from __future__ import annotations

from mme_local.serving import exposure_warning


def test_the_embedded_runtime_names_the_open_port_and_what_it_exposes() -> None:
    warning = exposure_warning(40123)
    assert warning is not None
    assert "port 40123 listens on every interface without authentication" in warning
    assert "load any folder of this host as a model" in warning


def test_a_confined_port_gets_no_warning() -> None:
    # The docker runtime on a bridge, and an external Triton, report no open port.
    assert exposure_warning(None) is None
