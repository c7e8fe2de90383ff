"""`mammo-tf data ...`: inspect, fetch, import and synthesise datasets.

Every path is a type from `mammo_tf_cli.paths`, checked before a command runs.
This module imports nothing from `main.py` (main imports it), so the CLI's
imports point one way.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from mammo_tf_cli.paths import InputDataset, InputFolder, InputFolderOrFile, OutputFile, OutputFolder

ARCHIVE_ENDINGS = (".tar.gz", ".tgz", ".tar", ".zip")

DATA_OPTION = click.option(
    "--data",
    type=InputDataset(),
    default=None,
    help="Dataset: MIAS-layout folder, folder with manifest.csv, a manifest .csv, or a shard folder (data shard) "
    "[default: $MAMMO_DATA, else the cached phantom].",
)


@click.group()
def data() -> None:
    """Inspect, fetch, import and synthesise datasets."""


@data.command()
@DATA_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    help="table: summary; csv: the findings table, one row per annotation line; json: summary.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Also list findings whose centre lies outside the breast mask (reads every annotated image).",
)
def info(data: Path | None, fmt: str, check: bool) -> None:
    """Summarise a dataset: images, patients, pixel spacing (mm), class x severity, coordinates known."""
    from mammo_tf.data.catalog import load_catalog

    catalog = load_catalog(data)
    if fmt == "csv":
        click.echo(catalog.findings_table().to_csv(index=False, lineterminator="\n"), nl=False)
        return
    summary = catalog.summary()
    if check:
        from mammo_tf.data.preprocess import findings_in_breast

        findings = catalog.findings
        outside = findings[findings["has_coords"] & ~findings_in_breast(catalog)]
        summary["outside_breast"] = [
            {"image_id": r.image_id, "abnormality": r.abnormality, "line": int(r.source_line)}
            for r in outside.itertuples()
        ]
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"dataset      {summary['root']} ({summary['source']})")
    click.echo(f"images       {summary['images']} of {summary['patients']} patients")
    click.echo(f"bit depth    {', '.join(str(b) for b in summary['bit_depths'])}")
    click.echo(f"spacing      {'; '.join(_spacing_text(s) for s in summary['spacing'])}")
    click.echo(f"tissue       {', '.join(f'{k}: {v}' for k, v in summary['tissue'].items()) or '-'}")
    click.echo(f"splits       {', '.join(f'{k}: {v}' for k, v in summary['splits'].items())}")
    click.echo(
        f"annotations  {summary['annotation_lines']} lines; {summary['abnormal_findings']} abnormal findings, "
        f"{summary['abnormal_with_coords']} with coordinates, {summary['abnormal_without_coords']} without"
    )
    click.echo("")
    click.echo(f"{'class':<8}{'severity':>9}{'lines':>7}{'images':>8}{'with x,y':>10}")
    for row in summary["classes"]:
        click.echo(
            f"{row['abnormality']:<8}{row['severity']:>9}{row['lines']:>7}{row['images']:>8}{row['with_coords']:>10}"
        )
    if check:
        outside = summary["outside_breast"]
        listed = ", ".join(f"{f['image_id']} {f['abnormality']} (line {f['line']})" for f in outside)
        click.echo(f"\ncentre outside the breast: {len(outside)}{': ' + listed if outside else ''}")


def _spacing_text(group: dict) -> str:
    """One spacing group of the summary: "MIAS (0.2 mm): 322 images at 0.2 mm", "unknown: 3 images"."""
    text = f"{group['source']}: {group['images']} image{'s' if group['images'] != 1 else ''}"
    if group["min_mm"] is None:
        return text
    low, high = group["min_mm"], group["max_mm"]
    return text + (f" at {low:.4g} mm" if low == high else f" at {low:.4g}-{high:.4g} mm")


@data.command()
@click.argument("dataset", type=click.Choice(["mias"]))
@click.option("--dest", type=OutputFolder(), default=Path("data/mias"), help="Folder to create.")
@click.option("--url", default=None, help="Mirror of all-mias.tar.gz [default: the official PEIPA address].")
def fetch(dataset: str, dest: Path, url: str | None) -> None:
    """Download a public dataset, verify its checksums and unpack it atomically."""
    from mammo_tf.data.fetch import MIAS_URL, fetch_mias

    out = fetch_mias(dest, url=url or MIAS_URL)
    click.echo(f"mini-MIAS ready in {out}")


@data.command(name="import")
@click.argument("src", type=InputFolderOrFile(*ARCHIVE_ENDINGS))
@click.option("--dest", type=OutputFolder(), default=Path("data/mias"), help="Folder to create.")
@click.option("--no-verify", is_flag=True, help="Accept copies whose files differ from the official checksums.")
def import_(src: Path, dest: Path, no_verify: bool) -> None:
    """Import mini-MIAS from a folder, .tar.gz or .zip (the offline route)."""
    from mammo_tf.data.fetch import import_mias

    out = import_mias(src, dest, verify=not no_verify)
    click.echo(f"mini-MIAS ready in {out}")


@data.command(name="import-cbis")
@click.argument("src", type=InputFolder())
@click.option("--out", type=OutputFolder(), required=True, help="Folder to create; gets manifest.csv.")
@click.option(
    "--spacing-mm",
    type=click.FloatRange(min=0, min_open=True),
    default=0.05,
    help="Pixel side in mm recorded for every image: CBIS-DDSM's headers state none "
    "(DDSM's scanners: 0.042-0.05 mm), so it is marked as assumed.",
)
def import_cbis(src: Path, out: Path, spacing_mm: float) -> None:
    """Write a manifest for a CBIS-DDSM download (CSVs + CBIS-DDSM/ folder); the DICOMs stay in SRC."""
    from mammo_tf.data.importers.cbis import import_cbis as run_import

    for line in run_import(src, out, spacing_mm=spacing_mm).lines():
        click.echo(line)


@data.command(name="import-vindr")
@click.argument("src", type=InputFolder())
@click.option("--out", type=OutputFolder(), required=True, help="Folder to create; gets manifest.csv.")
def import_vindr(src: Path, out: Path) -> None:
    """Write a manifest for VinDr-Mammo (finding_annotations.csv + images/); the DICOMs stay in SRC."""
    from mammo_tf.data.importers.vindr import import_vindr as run_import

    for line in run_import(src, out).lines():
        click.echo(line)


@data.command(name="import-inbreast")
@click.argument("src", type=InputFolder())
@click.option("--out", type=OutputFolder(), required=True, help="Folder to create; gets manifest.csv and masks/.")
def import_inbreast(src: Path, out: Path) -> None:
    """Write a manifest and speck masks for INbreast (INbreast.csv, AllDICOMs/, AllXML/); the DICOMs stay in SRC."""
    from mammo_tf.data.importers.inbreast import import_inbreast as run_import

    for line in run_import(src, out).lines():
        click.echo(line)


@data.command()
@click.option("--n", "n", type=click.IntRange(min=1), default=16, help="Number of images (pairs per patient).")
@click.option("--out", type=OutputFolder(), required=True, help="Folder to create.")
@click.option("--seed", type=int, default=0, help="Same seed, byte-identical files.")
@click.option("--size", type=click.IntRange(min=128), default=1024, help="Image side in pixels.")
def phantom(n: int, out: Path, seed: int, size: int) -> None:
    """Write a synthetic mammogram dataset in the MIAS layout (PGM + Info.txt)."""
    from mammo_tf.data.phantom import write_phantom

    write_phantom(out, n=n, seed=seed, size=size)
    click.echo(f"wrote {n} phantom images to {out}")


@data.command()
@DATA_OPTION
@click.option("--out", type=OutputFile(".png"), required=True, help="PNG file to write.")
@click.option("--films", type=click.IntRange(1, 16), default=4, help="Films to draw (calcification cases first).")
@click.option("--seed", type=int, default=0, help="Seed of the patch sampler.")
def preview(data: Path | None, out: Path, films: int, seed: int) -> None:
    """Draw films with breast mask and findings, and sampled patches per class, into one PNG."""
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.preview import write_preview

    write_preview(load_catalog(data), out, films=films, seed=seed)
    click.echo(f"wrote {out}")


# Which sampling options each --what takes: any other given on the command line is refused.
SHARD_OPTIONS = {
    "images": (),
    "sr-pairs": ("split", "seed", "spacing_mm", "n", "scale", "hr_size", "foreground_share", "chunk"),
    "patches": ("split", "seed", "spacing_mm", "patch_size", "per_cluster", "jitter", "normal_per_image"),
}


@data.command()
@DATA_OPTION
@click.option("--out", type=OutputFolder(), required=True, help="Shard folder to create (TFRecords + shards.json).")
@click.option(
    "--shard-size",
    "shard_mb",
    type=click.FloatRange(min=0, min_open=True),
    default=128.0,
    help="MiB at which a new TFRecord file is started.",
)
@click.option(
    "--what",
    type=click.Choice(["images", "sr-pairs", "patches"]),
    default="images",
    help="images: every image decoded once, with its catalog row and findings (any --data reads it); sr-pairs, "
    "patches: pre-sampled training pairs or labelled patches for a trainer's tf.data input.",
)
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test", "all"]),
    default="train",
    help="sr-pairs, patches: the images to sample from.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, help="sr-pairs, patches: the sampler's seed.")
@click.option(
    "--spacing-mm",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="sr-pairs, patches: sample at this pixel size (mm), images resampled first, as train-* --spacing-mm "
    "does [default: as they are].",
)
@click.option("--n", "n", type=click.IntRange(min=1), default=32768, help="sr-pairs: pairs to sample.")
@click.option("--scale", type=click.IntRange(min=2), default=2, help="sr-pairs: HR side / LR side.")
@click.option("--hr-size", type=click.IntRange(min=2), default=96, help="sr-pairs: HR crop side in pixels.")
@click.option(
    "--foreground-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.25,
    help="sr-pairs: share of crops on the film's labels, markers and breast edge (train-sr's default).",
)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=4096,
    help="sr-pairs: pairs a sampler call; memory about 4 x chunk pairs; recorded, as it decides the pairs drawn.",
)
@click.option("--patch-size", type=click.IntRange(min=8), default=64, help="patches: patch side in pixels.")
@click.option("--per-cluster", type=click.IntRange(min=0), default=8, help="patches: patches per calcification.")
@click.option("--jitter", type=click.IntRange(min=0), default=16, help="patches: max centre shift (pixels).")
@click.option("--normal-per-image", type=click.IntRange(min=0), default=4, help="patches: normal patches per image.")
def shard(data: Path | None, out: Path, shard_mb: float, what: str, **sampling) -> None:
    """Write a dataset, or SR pairs or patches sampled from it, into TFRecord shards with a manifest.

    --what images: every --data then accepts the folder. --what sr-pairs | patches: pre-sampled
    training input, read by a trainer's tf.data pipeline (docs/data.md, "Shards").
    """
    from mammo_tf.data.catalog import load_catalog

    ctx = click.get_current_context()
    for name in sampling:
        given = ctx.get_parameter_source(name) == click.ParameterSource.COMMANDLINE
        if given and name not in SHARD_OPTIONS[what]:
            flag = "--" + name.replace("_", "-")
            kinds = " or ".join(k for k, names in SHARD_OPTIONS.items() if name in names)
            raise click.UsageError(f"{flag} is for --what {kinds}, not --what {what}", ctx)
    catalog = load_catalog(data)
    options = {name: sampling[name] for name in SHARD_OPTIONS[what]}
    if "split" in options:
        options["split"] = None if options["split"] == "all" else options["split"]
    if what == "images":
        from mammo_tf.data.shards import write_shards

        manifest = write_shards(catalog, out, shard_mb=shard_mb)
    elif what == "sr-pairs":
        from mammo_tf.data.sample_shards import write_sr_pair_shards

        manifest = write_sr_pair_shards(catalog, out, shard_mb=shard_mb, **options)
    else:
        from mammo_tf.data.sample_shards import write_patch_shards

        manifest = write_patch_shards(catalog, out, shard_mb=shard_mb, **options)
    size = sum(f["bytes"] for f in manifest["files"]) / 2**20
    counts = manifest["counts"]
    if what == "images":
        held = f"{counts['images']} images"
    elif what == "sr-pairs":
        held = f"{counts['pairs']} SR pairs ({len(manifest['chunks'])} sampler calls)"
    else:
        held = f"{counts['patches']} patches (normal {counts['normal']}, benign {counts['benign']}, "
        held += f"malignant {counts['malignant']})"
    files = f"{counts['files']} shard file{'' if counts['files'] == 1 else 's'}"
    click.echo(f"wrote {held} in {files} ({size:.1f} MiB) to {out}")
