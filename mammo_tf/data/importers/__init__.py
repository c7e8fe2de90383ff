"""Adapters from public datasets' own layouts to the project's CSV manifest (`mammo-tf data import-...`).

Each adapter reads a dataset where it lies and writes one file, OUT/manifest.csv, in the manifest
format of `mammo_tf.data.manifest` (absolute image paths, so the manifest can live anywhere), plus
the source's own labels as extra columns; the source files are never copied or changed.

    cbis.py     CBIS-DDSM as downloaded from TCIA: `import_cbis(src, out, spacing_mm=0.05)`
    vindr.py    VinDr-Mammo as published on PhysioNet: `import_vindr(src, out)`
    inbreast.py INbreast's release folder: `import_inbreast(src, out)`, which also draws a speck mask
                per image into OUT/masks/
    common.py   what every adapter shares: source CSVs with line numbers, finding circles (of a mask,
                of points, of a box), BI-RADS as a stated suspicion, splits by patient, the progress
                bar, the summary, the all-or-nothing write of the manifest (and masks)

Nothing is imported here, so `import mammo_tf.data.importers.cbis` loads only what it needs.
"""
