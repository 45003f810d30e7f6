"""`mme-local deploy` and `mme-local teardown`: thin commands over the `cloud` package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cloud.errors import InvalidDeployInput
from cloud.inputs import deploy_settings, resolve_region, teardown_settings

ConfigPath = Annotated[
    Path | None,
    typer.Option("--config", help="Config file to read instead of ./mme.toml (if present)."),
]
Region = Annotated[
    str | None, typer.Option(help="AWS region; else mme.toml, then the AWS profile's region.")
]
Profile = Annotated[str | None, typer.Option(help="AWS profile for credentials.")]


def _echo(message: str) -> None:
    typer.secho(message, fg=typer.colors.CYAN, err=True)


def deploy(
    endpoint_name: Annotated[str | None, typer.Option(help="SageMaker EndpointName.")] = None,
    role_arn: Annotated[
        str | None, typer.Option(help="IAM role SageMaker assumes to read the artifacts.")
    ] = None,
    model_data_url: Annotated[
        str | None, typer.Option(help="s3://bucket/prefix/ holding the model.tar.gz objects.")
    ] = None,
    instance_type: Annotated[
        str | None, typer.Option(help="A single-GPU type, e.g. ml.g5.xlarge.")
    ] = None,
    instance_count: Annotated[
        int | None, typer.Option(help="Instances behind the endpoint.")
    ] = None,
    artifacts: Annotated[
        Path | None, typer.Option(help="Upload every *.tar.gz in this folder under the prefix.")
    ] = None,
    region: Region = None,
    profile: Profile = None,
    stack: Annotated[
        str | None,
        typer.Option(help="triton (the Triton image) or torchserve (the PyTorch DLC) [triton]."),
    ] = None,
    triton_version: Annotated[
        str | None, typer.Option(help="SageMaker Triton image version (default 24.09).")
    ] = None,
    pytorch_version: Annotated[
        str | None,
        typer.Option(help="With --stack torchserve: PyTorch inference image version (2.6)."),
    ] = None,
    model_cache: Annotated[
        str | None, typer.Option(help="MultiModelConfig.ModelCacheSetting: Enabled|Disabled.")
    ] = None,
    smoke_target: Annotated[
        str | None, typer.Option(help="Invoke this TargetModel once the endpoint is up.")
    ] = None,
    smoke_body: Annotated[
        Path | None,
        typer.Option(
            help="Request body for the smoke call; else zeros shaped by its config, or the "
            "request.json `package` wrote beside the artifacts."
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace objects whose content changed (live endpoints keep the old bytes).",
        ),
    ] = False,
    versioned_names: Annotated[
        bool,
        typer.Option("--versioned-names", help="Upload as <name>-<content hash>.tar.gz."),
    ] = False,
    footprint_bytes: Annotated[
        int | None,
        typer.Option(min=0, help="Largest model's measured footprint, checked against GPU memory."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the checks and every AWS call; make none.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for InService.")] = True,
    timeout_min: Annotated[float, typer.Option(help="Give up waiting after this long.")] = 60.0,
    config_file: ConfigPath = None,
) -> None:
    """Upload artifacts and create or roll a SageMaker GPU multi-model endpoint; idempotent."""
    from cloud.invoke import boto3_snippet, smoke_call, zeros_request
    from cloud.plan import DeployRequest, build_plan

    settings = deploy_settings(
        {
            "endpoint_name": endpoint_name,
            "role_arn": role_arn,
            "model_data_url": model_data_url,
            "instance_type": instance_type,
            "instance_count": instance_count,
            "models_dir": artifacts,
            "region": region,
            "profile": profile,
            "stack": stack,
            "triton_version": triton_version,
            "pytorch_version": pytorch_version,
            "model_cache": model_cache,
        },
        config_file,
    )
    request = DeployRequest(
        endpoint_name=settings.endpoint_name,
        role_arn=settings.role_arn,
        model_data_url=settings.model_data_url,
        instance_type=settings.instance_type,
        region=resolve_region(settings),
        instance_count=settings.instance_count,
        artifacts_dir=settings.models_dir,
        triton_version=settings.triton_version,
        stack=settings.stack,
        pytorch_version=settings.pytorch_version,
        model_cache=settings.model_cache,
        footprint_bytes=footprint_bytes,
        overwrite=overwrite,
        versioned_names=versioned_names,
    )
    plan = build_plan(request)
    smoke = None
    if smoke_target is not None:
        # With --versioned-names the file's own name stands for its versioned TargetModel.
        smoke_target = next(
            (t for path, t in plan.artifacts if path.name == smoke_target), smoke_target
        )
        body = _smoke_body(smoke_target, smoke_body, plan.artifacts, zeros_request)
        smoke = smoke_call(request.endpoint_name, smoke_target, body)
    if dry_run:
        from cloud.report import dry_run_text

        typer.echo("\n".join(dry_run_text(plan, smoke)))
        return
    for verdict in plan.verdicts:
        _echo(f"check {verdict}")
    summary = _run_deploy(plan, settings.profile, wait, timeout_min, smoke)
    target = smoke_target or (plan.artifacts[0][1] if plan.artifacts else "model.tar.gz")
    typer.echo("\n" + boto3_snippet(request.endpoint_name, request.region, target))
    typer.echo("\n" + "\n".join(summary))


def _smoke_body(
    target: str, body: Path | None, artifacts: tuple[tuple[Path, str], ...], zeros: Any
) -> bytes:
    if body is not None:
        return body.read_bytes()
    local = next((path for path, name in artifacts if name == target), None)
    if local is None:
        raise InvalidDeployInput(
            f"--smoke-target {target} is not in --artifacts: pass --smoke-body FILE as well"
        )
    try:
        result: bytes = zeros(local)
    except InvalidDeployInput:
        # A TorchServe archive has no Triton config to shape zeros by; `package` wrote a body.
        written = local.parent / "request.json"
        if not written.is_file():
            raise
        return written.read_bytes()
    return result


def _run_deploy(
    plan: Any, profile: str | None, wait: bool, timeout_min: float, smoke: Any
) -> list[str]:
    """Deploy with live progress; returns the summary table's lines."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from cloud.aws import Clients, make_session
    from cloud.deploy import Deployer, Hooks
    from cloud.report import summary_table
    from cloud.smoke import invoke_when_ready

    clients = Clients.for_session(make_session(plan.request.region, profile))
    total = sum(path.stat().st_size for path, _ in plan.artifacts)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, TimeElapsedColumn(), transient=True) as progress:
        upload = progress.add_task("uploading artifacts", total=total)
        waiting = progress.add_task("endpoint", total=None, visible=False)

        def uploaded(target: str, status: str) -> None:
            if status == "unchanged":
                progress.advance(
                    upload, next(p for p, t in plan.artifacts if t == target).stat().st_size
                )
            progress.update(upload, description=f"{target}: {status}")

        def status(state: str, waited: float) -> None:
            progress.console.print(
                f"endpoint {plan.request.endpoint_name}: {state} ({waited:.0f} s)"
            )

        def tick(state: str, waited: float) -> None:
            description = f"endpoint {plan.request.endpoint_name}: {state}, {waited:.0f} s"
            progress.update(waiting, description=description, visible=True)

        hooks = Hooks(
            say=progress.console.print,
            uploaded=uploaded,
            status=status,
            waiting=tick,
            bytes_sent=lambda sent: progress.advance(upload, sent),
        )
        deployer = Deployer(plan, clients, hooks, timeout_s=timeout_min * 60)
        outcome = deployer.run(wait=wait)
    if not outcome.changes:
        _echo("nothing changed: AWS already matches these inputs")
    typer.echo(
        f"endpoint {outcome.endpoint_name}: {outcome.status} "
        f"(model {outcome.model_name}, endpoint config {outcome.config_name})"
    )
    if smoke is not None and outcome.status != "InService":
        _echo("smoke test skipped: the endpoint is not InService yet (--no-wait)")
    elif smoke is not None:
        size = len(invoke_when_ready(clients.runtime, smoke, say=_echo))
        typer.echo(f"smoke test: {smoke.params['TargetModel']} answered {size} bytes")
    return summary_table(outcome.summary)


def teardown(
    endpoint_name: Annotated[str, typer.Argument(help="The EndpointName to delete.")],
    region: Region = None,
    profile: Profile = None,
    delete_artifacts: Annotated[
        bool,
        typer.Option("--delete-artifacts", help="Also delete the objects deploy uploaded for it."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config_file: ConfigPath = None,
) -> None:
    """Delete the endpoint, endpoint configs and models deploy made for it (tag-checked)."""
    from cloud.aws import Clients, make_session
    from cloud.teardown import counted, plan_teardown
    from cloud.teardown import teardown as run_teardown

    settings = teardown_settings({"region": region, "profile": profile}, config_file)
    region_name = resolve_region(settings)
    clients = Clients.for_session(make_session(region_name, settings.profile))
    plan = plan_teardown(clients, endpoint_name, delete_artifacts)
    for kept in plan.kept:
        _echo(f"keeping {kept}")
    deletions = plan.deletions()
    if not deletions:
        typer.echo(f"nothing named {endpoint_name} to delete in {region_name}")
        return
    typer.echo(f"would delete in {region_name}:" if dry_run else f"to delete in {region_name}:")
    for line in deletions:
        typer.echo(f"  {line}")
    if dry_run:
        return
    if not yes:
        question = f"delete these {counted(plan.resource_count, plan.object_count)}?"
        try:
            confirmed = typer.confirm(question)
        except typer.Abort:
            # A closed stdin (a script, CI) or Ctrl-C at the question.
            typer.echo("\nnothing was deleted: no answer (pass --yes to delete without asking)")
            raise typer.Exit(1) from None
        if not confirmed:
            typer.echo("nothing was deleted")
            raise typer.Exit(1)
    report = run_teardown(clients, endpoint_name, delete_artifacts, say=_echo, plan=plan)
    done = counted(report.resources_deleted, report.objects_deleted)
    typer.echo(f"deleted {done} for {endpoint_name} in {region_name}")
