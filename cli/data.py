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
    help="images: every image decoded once, with its catalog row and findings; sr-pairs, patches: not implemented yet.",
)
def shard(data: Path | None, out: Path, shard_mb: float, what: str) -> None:
    """Write a dataset into TFRecord shards with a manifest; every --data then accepts the folder."""
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.shards import write_shards
    from mammo_tf.errors import MammoError

    if what != "images":
        raise MammoError(f"--what {what}: not implemented yet (only --what images)")
    manifest = write_shards(load_catalog(data), out, shard_mb=shard_mb)
    size = sum(f["bytes"] for f in manifest["files"]) / 2**20
    counts = manifest["counts"]
    click.echo(f"wrote {counts['images']} images in {counts['files']} shard files ({size:.1f} MiB) to {out}")
