"""The cloud container's Triton, replayed from the `serve` script's rules, runs the local flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.parity import CLOUD_ONLY, argv_differences, argv_verdict, cloud_argv, local_argv
from cloud.plan import DeployRequest, build_plan
from cloud.serve_script import RULES, ServeScriptExit, inference_type, ping_mode, serve_argv
from mme_local.runtime.docker_runtime import container_environment
from mme_local.runtime.triton_config import (
    TritonSettings,
    UnportableTritonSetting,
    sagemaker_environment,
    triton_environment,
)
from tests.unit.test_cloud import INSTANCE, PREFIX_URL, ROLE

README = Path(__file__).parents[2] / "README.md"

SETTINGS = [
    TritonSettings(),
    TritonSettings(thread_count=3, log_verbose=2, shm_default_bytes=1 << 26),
    TritonSettings(
        shm_growth_bytes=1 << 21, extra_args=("--log-info=true", "--exit-timeout-secs=5")
    ),
]


def test_serve_defaults_when_the_environment_is_empty() -> None:
    argv = serve_argv({"SAGEMAKER_MULTI_MODEL": "true"})
    assert argv == [
        "--allow-sagemaker=true",
        "--allow-http=false",
        "--model-control-mode=explicit",
        "--model-repository=/tmp/sagemaker",
        "--model-namespacing=true",
        "--allow-grpc=false",
        "--allow-metrics=false",
        "--log-verbose=true",
        "--backend-config=python,shm-default-byte-size=16777216",
        "--backend-config=python,shm-growth-byte-size=1048576",
    ]
    assert ping_mode({"SAGEMAKER_MULTI_MODEL": "true"}) == "ready"


@pytest.mark.parametrize(
    ("environment", "mode"),
    [
        # Unexported, serve's computed value never reaches tritonserver: its default wins.
        ({"SAGEMAKER_MULTI_MODEL": "true"}, "ready"),
        ({"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_TRITON_OVERRIDE_PING_MODE": "live"}, "ready"),
        # Exported (set in the container's environment), serve overwrites it: live for MME...
        ({"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_TRITON_PING_MODE": "ready"}, "live"),
        ({"SAGEMAKER_TRITON_PING_MODE": "live"}, "ready"),
        # ...unless the override is set, which wins in both modes.
        (
            {
                "SAGEMAKER_MULTI_MODEL": "true",
                "SAGEMAKER_TRITON_PING_MODE": "live",
                "SAGEMAKER_TRITON_OVERRIDE_PING_MODE": "ready",
            },
            "ready",
        ),
        (
            {"SAGEMAKER_TRITON_PING_MODE": "x", "SAGEMAKER_TRITON_OVERRIDE_PING_MODE": "live"},
            "live",
        ),
    ],
)
def test_ping_mode_as_serve_leaves_it_for_tritonserver(
    environment: dict[str, str], mode: str
) -> None:
    assert ping_mode(environment) == mode


def test_serve_checks_the_inference_type_and_tritonserver_reads_it() -> None:
    base = {"SAGEMAKER_MULTI_MODEL": "true"}
    assert inference_type(base) == "infer"
    for value in ("infer", "generate", "generate_stream"):
        environment = {**base, "SAGEMAKER_TRITON_INFERENCE_TYPE": value}
        assert inference_type(environment) == value
        assert serve_argv(environment) == serve_argv(base), "read by tritonserver, not a flag"
    with pytest.raises(ServeScriptExit, match="Invalid SAGEMAKER_TRITON_INFERENCE_TYPE 'embed'"):
        serve_argv({**base, "SAGEMAKER_TRITON_INFERENCE_TYPE": "embed"})


def test_grpc_and_metrics_stay_off_unless_asked_for() -> None:
    argv = serve_argv({"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_TRITON_ALLOW_METRICS": "true"})
    assert "--allow-grpc=false" in argv
    assert "--allow-metrics=true" in argv
    assert "--allow-metrics=false" not in argv


def test_serve_turns_each_variable_into_its_flag() -> None:
    environment = {rule.variable: f"v{index}" for index, rule in enumerate(RULES)}
    environment["SAGEMAKER_TRITON_MODEL_LOAD_GPU_LIMIT"] = "0.8"
    environment["SAGEMAKER_TRITON_ADDITIONAL_ARGS"] = "--a=1  --b=2"
    argv = serve_argv(environment, gpu_count=2)
    assert "--model-repository=/opt/ml/model/" in argv
    for index, rule in enumerate(RULES):
        assert f"{rule.flag}v{index}" in argv
    assert argv[-6:] == [
        "--model-load-gpu-limit",
        "0:0.8",
        "--model-load-gpu-limit",
        "1:0.8",
        "--a=1",
        "--b=2",
    ]


@pytest.mark.parametrize("settings", SETTINGS)
def test_cloud_container_runs_the_local_flags(settings: TritonSettings) -> None:
    environment = sagemaker_environment(settings)
    only_local, only_cloud = argv_differences(local_argv(settings), cloud_argv(environment))
    assert only_local == []
    assert [a.partition("=")[0] for a in only_cloud] == list(CLOUD_ONLY)


def test_both_sides_ping_live_although_serve_does_not_export_it() -> None:
    environment = sagemaker_environment(TritonSettings())
    assert ping_mode(environment) == "live"
    assert triton_environment()["SAGEMAKER_TRITON_PING_MODE"] == "live"
    assert container_environment(TritonSettings(), 8080, "none")["SAGEMAKER_TRITON_PING_MODE"] == (
        "live"
    )
    without = {k: v for k, v in environment.items() if k != "SAGEMAKER_TRITON_PING_MODE"}
    assert ping_mode(without) == "ready"


def test_every_variable_we_send_is_one_serve_or_tritonserver_reads() -> None:
    read = {rule.variable for rule in RULES} | {
        "SAGEMAKER_MULTI_MODEL",
        "SAGEMAKER_TRITON_PING_MODE",
        "SAGEMAKER_TRITON_ADDITIONAL_ARGS",
    }
    environment = sagemaker_environment(TritonSettings(extra_args=("--log-info=true",)))
    assert set(environment) <= read


def test_deploy_plan_sends_the_environment_and_says_the_flags_agree() -> None:
    plan = build_plan(DeployRequest("demo-mme", ROLE, PREFIX_URL, INSTANCE, "us-east-1"))
    assert plan.create_model().params["PrimaryContainer"]["Environment"] == (
        sagemaker_environment(TritonSettings())
    )
    verdict = next(v for v in plan.verdicts if v.check == "triton flags")
    assert verdict.outcome == "ok", verdict


def test_an_argument_serve_would_split_is_refused() -> None:
    with pytest.raises(UnportableTritonSetting, match="splits SAGEMAKER_TRITON_ADDITIONAL_ARGS"):
        sagemaker_environment(TritonSettings(extra_args=("--log-file=/tmp/a b",)))


def test_readme_lists_every_remaining_difference() -> None:
    text = README.read_text()
    for flag in CLOUD_ONLY:
        assert flag in text


def test_a_different_inference_type_is_a_flag_difference() -> None:
    environment = {
        **sagemaker_environment(TritonSettings()),
        "SAGEMAKER_TRITON_INFERENCE_TYPE": "generate",
    }
    verdict = argv_verdict(TritonSettings(), environment)
    assert verdict.outcome == "warning"
    assert "inference type generate (local infer)" in verdict.detail
