"""The emulator end to end: real boto3, real moto S3 server, real Triton."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mme_local.background import RunningEmulator, run_in_thread
from mme_local.runtime.embedded import EmbeddedTriton
from mme_local.settings import EmulatorSettings
from mme_local.store.embedded import EmbeddedS3
from tests.support import doubler_archive, kserve_body, kserve_output, tar_gz_bytes

pytestmark = pytest.mark.integration


def _upload(running: RunningEmulator, path: Path, target_model: str | None = None) -> str:
    target = target_model or path.name
    running.s3_client().upload_file(
        str(path), running.model_data.bucket, running.model_data.prefix + target
    )
    return target


def _put(running: RunningEmulator, target_model: str, data: bytes) -> str:
    running.s3_client().put_object(
        Bucket=running.model_data.bucket, Key=running.model_data.prefix + target_model, Body=data
    )
    return target_model


def _invoke(client: Any, target: str, values: list[float], **kwargs: Any) -> dict[str, Any]:
    response: dict[str, Any] = client.invoke_endpoint(
        EndpointName=kwargs.pop("EndpointName", "local-mme"),
        TargetModel=target,
        Body=kserve_body(values),
        ContentType="application/octet-stream",
        **kwargs,
    )
    return response


def _error(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    settings = EmulatorSettings(port=0, cache_dir=tmp_path_factory.mktemp("cache") / "models")
    with run_in_thread(settings) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


def test_boto3_invokes_three_models(running: RunningEmulator, artifacts: Path) -> None:
    client = running.runtime_client()
    for factor in (2, 3, 4):
        _upload(running, doubler_archive(artifacts, f"times-{factor}.tar.gz", factor))
    for factor in (2, 3, 4):
        response = _invoke(client, f"times-{factor}.tar.gz", [1.0, 2.5])
        assert kserve_output(response["Body"].read()) == [1.0 * factor, 2.5 * factor]
        assert response["ContentType"].startswith("application/json")
        assert response["InvokedProductionVariant"] == "AllTraffic"
        assert response["ResponseMetadata"]["RequestId"]
        assert "CustomAttributes" not in response


def test_target_model_in_a_sub_folder(running: RunningEmulator, artifacts: Path) -> None:
    target = _upload(
        running, doubler_archive(artifacts, "nested.tar.gz", 5), "team-a/v1/model-1.tar.gz"
    )
    response = _invoke(running.runtime_client(), target, [2.0])
    assert kserve_output(response["Body"].read()) == [10.0]


def test_aws_cli_invoke_endpoint(running: RunningEmulator, artifacts: Path, tmp_path: Path) -> None:
    target = _upload(running, doubler_archive(artifacts, "cli.tar.gz", 7))
    body = tmp_path / "body.json"
    body.write_bytes(kserve_body([3.0]))
    out = tmp_path / "out.json"
    environment = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    aws = Path(sys.executable).parent / "aws"
    result = subprocess.run(
        [
            str(aws), "sagemaker-runtime", "invoke-endpoint",
            "--endpoint-url", running.url,
            "--endpoint-name", "local-mme",
            "--target-model", target,
            "--content-type", "application/json",
            "--body", f"fileb://{body}",
            str(out),
        ],
        capture_output=True, text=True, env=environment, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert '"InvokedProductionVariant": "AllTraffic"' in result.stdout
    assert kserve_output(out.read_bytes()) == [21.0]


def test_validation_errors(running: RunningEmulator, artifacts: Path) -> None:
    client = running.runtime_client()
    target = _upload(running, doubler_archive(artifacts, "valid.tar.gz"))

    error = _error(lambda: _invoke(client, target, [1.0], EndpointName="other-endpoint"))
    assert error.response["Error"]["Code"] == "ValidationError"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error.response["Error"]["Message"] == (
        "Endpoint other-endpoint of account 123456789012 not found."
    )
    assert isinstance(error, client.exceptions.ValidationError)

    error = _error(
        lambda: client.invoke_endpoint(EndpointName="local-mme", Body=kserve_body([1.0]))
    )
    assert isinstance(error, client.exceptions.ValidationError)
    assert "is missing a target model header" in error.response["Error"]["Message"]

    error = _error(lambda: _invoke(client, "tab\tin-name.tar.gz", [1.0]))
    assert isinstance(error, client.exceptions.ValidationError)
    assert "targetModel" in error.response["Error"]["Message"]

    error = _error(lambda: _invoke(client, "x" * 1025, [1.0]))
    assert isinstance(error, client.exceptions.ValidationError)

    error = _error(lambda: _invoke(client, "does-not-exist.tar.gz", [1.0]))
    assert isinstance(error, client.exceptions.ValidationError)
    assert error.response["Error"]["Message"] == (
        "Failed to download model data (bucket: mme-local, key: models/does-not-exist.tar.gz)"
    )

    error = _error(
        lambda: client.invoke_endpoint(
            EndpointName="local-mme", TargetModel=target, Body=b"x" * (6_291_456 + 1)
        )
    )
    assert isinstance(error, client.exceptions.ValidationError)
    assert "6291456" in error.response["Error"]["Message"]
    # A body of exactly the limit passes validation and reaches the model.
    error = _error(
        lambda: client.invoke_endpoint(
            EndpointName="local-mme", TargetModel=target, Body=b"x" * 6_291_456
        )
    )
    assert isinstance(error, client.exceptions.ModelError)


def test_model_error_carries_the_container_answer(
    running: RunningEmulator, artifacts: Path
) -> None:
    client = running.runtime_client()
    target = _upload(running, doubler_archive(artifacts, "model-error.tar.gz"))
    bad_input = b'{"inputs":[{"name":"nope","shape":[1],"datatype":"FP32","data":[1]}]}'
    error = _error(
        lambda: client.invoke_endpoint(EndpointName="local-mme", TargetModel=target, Body=bad_input)
    )
    assert isinstance(error, client.exceptions.ModelError)
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error.response["OriginalStatusCode"] == 400
    assert "nope" in error.response["OriginalMessage"]
    assert error.response["LogStreamArn"] == (
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/local-mme"
    )
    assert error.response["Error"]["Message"].startswith("Received client error (400) from model")


def test_thirty_two_cold_requests_share_one_download_and_one_load(
    running: RunningEmulator, artifacts: Path
) -> None:
    target = _upload(running, doubler_archive(artifacts, "crowd.tar.gz", 6, load_delay_s=1.0))
    client = running.runtime_client(max_pool_connections=32)
    before = running.metrics()
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda i: _invoke(client, target, [float(i)]), range(32)))
    outputs = sorted(kserve_output(r["Body"].read())[0] for r in results)
    assert outputs == [6.0 * i for i in range(32)]
    after = running.metrics()

    def delta(name: str) -> float:
        return after[name] - before.get(name, 0.0)

    assert delta("mme_model_downloading_time_seconds_count") == 1
    assert delta("mme_model_loading_time_seconds_count") == 1
    assert delta("mme_model_loading_wait_time_seconds_count") == 32
    assert delta("mme_invocations_total") == 32


def test_hostile_archives_are_refused_and_nothing_escapes(
    running: RunningEmulator, artifacts: Path, tmp_path: Path
) -> None:
    client = running.runtime_client()
    cache = running.emulator.cache_dir
    outside = cache.parent
    before_outside = sorted(p.name for p in outside.iterdir())
    escape_target = tmp_path / "escaped.txt"
    cases = {
        "absolute.tar.gz": (tar_gz_bytes({str(escape_target): b"pwned"}), "absolute path"),
        "dotdot.tar.gz": (tar_gz_bytes({"m/../../../escaped.txt": b"pwned"}), "'..'"),
        "symlink.tar.gz": (
            tar_gz_bytes({"m/config.pbtxt": b""}, links={"m/1": str(tmp_path)}),
            "link",
        ),
        "not-gzip.tar.gz": (b"this is not a gzip file at all", "not a valid gzip-compressed tar"),
        # A link that only a later link would turn outward, and folders past os.makedirs'
        # recursion: both a 400, as `lint` says, never a 500.
        "later-link.tar.gz": (
            tar_gz_bytes({}, links={"m/d/a": "c/../../../etc/passwd", "m/d/c": "../.."}),
            "after a folder name",
        ),
        "deep.tar.gz": (tar_gz_bytes({"d/" * 500 + "x": b"x"}), "deeper than 32 folders"),
    }
    for name, (data, expected) in cases.items():
        _put(running, name, data)
        error = _error(lambda name=name: _invoke(client, name, [1.0]))  # type: ignore[misc]
        assert isinstance(error, client.exceptions.ValidationError), name
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert expected in error.response["Error"]["Message"], error.response["Error"]["Message"]
    assert not escape_target.exists()
    assert sorted(p.name for p in outside.iterdir()) == before_outside
    leftovers = [p for p in cache.rglob("*") if ".partial-" in str(p)]
    assert leftovers == []
    # The endpoint keeps serving.
    target = _upload(running, doubler_archive(artifacts, "after-hostile.tar.gz", 2))
    assert kserve_output(_invoke(client, target, [4.0])["Body"].read()) == [8.0]


def test_archive_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    settings = EmulatorSettings(port=0, cache_dir=tmp_path / "cache", max_archive_bytes=10_000)
    with run_in_thread(settings) as running:
        _put(running, "huge.tar.gz", tar_gz_bytes({"m/big.bin": b"\0" * 50_000}))
        client = running.runtime_client()
        error = _error(lambda: _invoke(client, "huge.tar.gz", [1.0]))
        assert isinstance(error, client.exceptions.ValidationError)
        assert "expands past the limit of 10000 bytes" in error.response["Error"]["Message"]
        assert [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == []


def test_lru_eviction_and_reload_from_disk(tmp_path: Path) -> None:
    settings = EmulatorSettings(port=0, cache_dir=tmp_path / "cache", max_loaded_models=2)
    with run_in_thread(settings) as running:
        client = running.runtime_client()
        for name in ("a", "b", "c"):
            _upload(running, doubler_archive(tmp_path, f"{name}.tar.gz"))
        for name in ("a", "b", "c"):
            _invoke(client, f"{name}.tar.gz", [1.0])
        running.settle()
        metrics = running.metrics()
        assert metrics["mme_loaded_model_count"] == 2
        assert metrics["mme_model_downloading_time_seconds_count"] == 3
        assert metrics["mme_model_unloading_time_seconds_count"] == 1
        evicted = [e.target_model for e in running.emulator.cache.evictions]
        assert evicted == ["a.tar.gz"]

        _invoke(client, "a.tar.gz", [1.0])
        running.settle()
        metrics = running.metrics()
        assert metrics["mme_model_downloading_time_seconds_count"] == 3, "reloaded from disk"
        assert metrics["mme_model_loading_time_seconds_count"] == 4
        assert metrics["mme_loaded_model_count"] == 2
        assert [e.target_model for e in running.emulator.cache.evictions] == [
            "a.tar.gz",
            "b.tar.gz",
        ]


def test_slow_request_is_not_cut_off_by_eviction_pressure(tmp_path: Path) -> None:
    settings = EmulatorSettings(port=0, cache_dir=tmp_path / "cache", max_loaded_models=1)
    with run_in_thread(settings) as running:
        client = running.runtime_client(read_timeout=120)
        for name in ("slow", "other-1", "other-2"):
            _upload(running, doubler_archive(tmp_path, f"{name}.tar.gz"))
        _invoke(client, "slow.tar.gz", [1.0])
        slow_result: dict[str, Any] = {}

        def slow_call() -> None:
            # A negative first value makes the model sleep that many seconds.
            response = _invoke(client, "slow.tar.gz", [-6.0, 1.0])
            slow_result["output"] = kserve_output(response["Body"].read())
            slow_result["finished_at"] = time.time()

        worker = threading.Thread(target=slow_call)
        worker.start()
        time.sleep(0.5)
        # Both need room; the only loaded model is pinned by the slow request.
        assert kserve_output(_invoke(client, "other-1.tar.gz", [1.0])["Body"].read()) == [2.0]
        assert kserve_output(_invoke(client, "other-2.tar.gz", [1.0])["Body"].read()) == [2.0]
        worker.join(timeout=60)
        assert slow_result["output"] == [-12.0, 2.0]
        evicted_while_busy = [
            e
            for e in running.emulator.cache.evictions
            if e.target_model == "slow.tar.gz" and e.at < slow_result["finished_at"]
        ]
        assert evicted_while_busy == []


def test_cold_start_slower_than_the_ready_timeout_answers_429(tmp_path: Path) -> None:
    settings = EmulatorSettings(port=0, cache_dir=tmp_path / "cache", model_ready_timeout_s=0.5)
    with run_in_thread(settings) as running:
        _upload(running, doubler_archive(tmp_path, "sluggish.tar.gz", 3, load_delay_s=3.0))
        # Standard retry mode does not retry 429, so the first answer reaches the test.
        client = running.runtime_client(retries={"max_attempts": 1, "mode": "standard"})
        error = _error(lambda: _invoke(client, "sluggish.tar.gz", [1.0]))
        assert isinstance(error, client.exceptions.ModelNotReadyException)
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        # The load carried on in the background; a retry soon succeeds without a new load.
        deadline = time.monotonic() + 30
        while True:
            try:
                response = _invoke(client, "sluggish.tar.gz", [1.0])
                break
            except client.exceptions.ModelNotReadyException:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        assert kserve_output(response["Body"].read()) == [3.0]
        assert running.metrics()["mme_model_loading_time_seconds_count"] == 1


def test_s3_outage_is_an_internal_dependency_error(tmp_path: Path) -> None:
    import asyncio

    store = EmbeddedS3()
    asyncio.run(store.start())
    try:
        settings = EmulatorSettings(port=0, cache_dir=tmp_path / "cache", s3_endpoint_url=store.url)
        s3 = None
        from mme_local.store.publish import ensure_bucket
        from mme_local.store.source import s3_client

        s3 = s3_client(store.url, "us-east-1")
        ensure_bucket(s3, "mme-local", "us-east-1")
        with run_in_thread(settings) as running:
            _upload(running, doubler_archive(tmp_path, "before.tar.gz"))
            client = running.runtime_client()
            assert kserve_output(_invoke(client, "before.tar.gz", [1.0])["Body"].read()) == [2.0]
            asyncio.run(store.stop())
            error = _error(lambda: _invoke(client, "after.tar.gz", [1.0]))
            assert isinstance(error, client.exceptions.InternalDependencyException)
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 530
            # Models already loaded keep answering while S3 is down.
            assert kserve_output(_invoke(client, "before.tar.gz", [1.0])["Body"].read()) == [2.0]
    finally:
        asyncio.run(store.stop())


def test_triton_killed_under_traffic_recovers(tmp_path: Path) -> None:
    settings = EmulatorSettings(port=0, cache_dir=tmp_path / "cache")
    with run_in_thread(settings) as running:
        _upload(running, doubler_archive(tmp_path, "steady.tar.gz"))
        client = running.runtime_client()
        assert kserve_output(_invoke(client, "steady.tar.gz", [1.0])["Body"].read()) == [2.0]
        server = running.emulator.server
        assert isinstance(server, EmbeddedTriton) and server.pid is not None

        codes: list[str] = []
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                try:
                    _invoke(client, "steady.tar.gz", [1.0])
                    codes.append("ok")
                except ClientError as error:
                    codes.append(error.response["Error"]["Code"])

        workers = [threading.Thread(target=traffic) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(0.5)
        os.kill(server.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.5)
            failures = [i for i, code in enumerate(codes) if code != "ok"]
            if failures and codes[failures[-1] + 1 :].count("ok") >= 20:
                break
        stop.set()
        for worker in workers:
            worker.join(timeout=30)

        failures = [code for code in codes if code != "ok"]
        assert failures, "the kill was seen by some requests"
        assert set(failures) == {"ServiceUnavailable"}
        assert codes[-20:] == ["ok"] * 20
        assert running.metrics()["mme_runtime_restarts_total"] == 1
