"""`mammo-tf export MODEL --name NAME`: a TF Serving SavedModel. Parse, call one library function, print."""

from __future__ import annotations

from pathlib import Path

import click

from mammo_tf_cli.paths import OutputFolder


def _spec(tensors: dict) -> str:
    return ", ".join(
        f"{name} {dtype} {[-1 if d is None else d for d in shape]}" for name, (dtype, shape) in tensors.items()
    )


@click.command(name="export", context_settings={"show_default": True})
@click.argument("model")
@click.option("--name", required=True, help="Model name in TF Serving: the folder <out>/<name>/ and /v1/models/<name>.")
@click.option(
    "--version",
    type=click.IntRange(min=1),
    default=None,
    help="Version folder, an integer that does not exist yet [default: one above the highest].",
)
@click.option(
    "--out",
    type=OutputFolder(must_be_new_or_empty=False),
    default=Path("saved_models/serving"),
    help="Folder TF Serving mounts as /models; models.config is (re)written there.",
)
def export(model, name, version, out) -> None:
    """Export a model as a SavedModel for TensorFlow Serving.

    MODEL: a shipped model name, a .keras file or a run directory. Writes <out>/<name>/<version>/ with named
    signatures (SR generator: serving_default, serve_uint16; synthesis generator: serving_default, serve_seeded),
    checks it against the Keras model in a fresh process before publishing it, and rewrites <out>/models.config.
    """
    from mammo_tf.workflows.export import export_info, export_model

    path = export_model(model, name, version=version, out=out)
    info = export_info(path)
    click.echo(f"exported {info['name']} version {info['version']} ({info['kind']}, {info['model_id']}): {path}")
    for signature, spec in info["signatures"].items():
        click.echo(f"  {signature}: {_spec(spec['inputs'])} -> {_spec(spec['outputs'])}")
    worst = max(info["verification"]["max_abs_diff"].values(), default=0.0)
    tol = info["tolerance"]
    click.echo(
        f"verified in a fresh process (tf.saved_model.load, no mammo_tf): max |SavedModel - Keras| = {worst:.3g} "
        f"(tolerance {tol['float_max_abs']:g} float, {tol['int_max_abs']} grey level integer)"
    )
    click.echo(f"wrote {Path(out) / 'models.config'}")
