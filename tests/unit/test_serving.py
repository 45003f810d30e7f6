"""What `up` warns about at start."""

from __future__ import annotations

from mme_local.serving import exposure_warning


def test_the_embedded_runtime_names_the_open_port_and_what_it_exposes() -> None:
    warning = exposure_warning("embedded", "http://127.0.0.1:40123")
    assert warning is not None
    assert "port 40123 listens on every interface without authentication" in warning
    assert "load any folder of this host as a model" in warning


def test_the_container_runtimes_confine_their_own_port() -> None:
    assert exposure_warning("docker", "http://127.0.0.1:40123") is None
    assert exposure_warning("external", "http://triton:8080") is None
