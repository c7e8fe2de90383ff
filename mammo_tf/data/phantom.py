"""A synthetic mini-MIAS: MLO-like film mammograms with calcification clusters at known positions.

Why: every command needs a dataset that exists without downloads or licences, and
super-resolution needs ground truth for each calcification speck. The phantom is
written in the MIAS layout (mdbNNN.pgm + Info.txt, CRLF, origin bottom-left, odd =
right breast with the chest wall on the right edge), so the MIAS loader reads it
unchanged; `phantom_truth.csv` adds every speck's position and radius.

Rendering is pure and deterministic: image k depends only on (seed, k, size), never
on n, the clock or threads. Lengths are given in pixels of a 1024-pixel image and
scale with size/1024.

Pixel spacing: the film is MIAS-like, 1024 pixels of 0.2 mm (204.8 mm) at the default
size; since the anatomy scales with size, a `size`-pixel phantom has 204.8 / size mm
per pixel (`phantom_spacing_mm`; the catalog records it with source "phantom").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.fft as sfft

from mammo_tf.errors import MammoError, located
from mammo_tf.io.atomic import atomic_dir
from mammo_tf.io.images import encode_pgm
from mammo_tf.paths import cache_root

DEFAULT_PHANTOM_N = 16
DEFAULT_PHANTOM_SIZE = 1024
MIN_SIZE = 128
MAX_N = 999  # MIAS reference numbers have three digits
TRUTH_NAME = "phantom_truth.csv"
FILM_SIDE_MM = 204.8  # the drawn film's side: 1024 MIAS pixels of 0.2 mm
_TAG_IMAGE, _TAG_TISSUE, _TAG_CLASS = 0x5048414E, 0x54495353, 0x434C4153  # keep the seed streams apart
_TISSUE_BIAS = {"F": -1.7, "G": -0.5, "D": 0.5}  # shifts the glandular fraction: fatty < mixed < dense
_FONT = {  # 5x7 block letters for the film label
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "M": ["10001", "11011", "10101", "10101", "10001", "10001", "10001"],
}


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([k % 2**64 for k in keys]))


def phantom_spacing_mm(size: int) -> float:
    """mm per pixel (rows and columns) of a `size`-pixel phantom: 0.2 at the default 1024, like MIAS.

    Speck and cluster radii have floors of about one and three pixels, so a small phantom's specks are
    larger than this spacing would make them; the breast, film and texture follow it.
    """
    return FILM_SIDE_MM / size


def image_plan(index: int, seed: int) -> tuple[str, list[str]]:
    """(tissue, cluster severities) of image `index` (1-based), independent of n.

    Tissue is drawn per patient from shuffled F/G/D triples, classes from shuffled
    blocks of five images [B, M, NORM, NORM, B-or-M], the first block arranged so
    that images 1-4 hold a benign and a malignant cluster: tiny datasets cover all classes.
    """
    patient = (index - 1) // 2
    tissue = str(_rng(_TAG_TISSUE, seed, patient // 3).permutation(["F", "G", "D"])[patient % 3])
    block, pos = divmod(index - 1, 5)
    slots = [str(x) for x in _rng(_TAG_CLASS, seed, block).permutation(["B", "M", "N", "N", "X"])]
    if block == 0 and slots[4] in ("B", "M"):
        j = slots.index("N")
        slots[4], slots[j] = slots[j], slots[4]
    rng = _rng(_TAG_CLASS, seed, block, pos)
    slot = slots[pos]
    if slot == "N":
        return tissue, []
    severity = slot if slot != "X" else ("B" if rng.random() < 0.5 else "M")
    return tissue, [severity] * (2 if rng.random() < 0.2 else 1)


def _power_law_fields(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-variance textures from one white noise: 1/f^3 anisotropic tissue, thin-strand ridges."""
    white = rng.standard_normal((size, size), dtype=np.float32)
    spec = sfft.rfft2(white, workers=1)
    fy = sfft.fftfreq(size).astype(np.float32)[:, None]
    fx = sfft.rfftfreq(size).astype(np.float32)[None, :]
    theta = rng.uniform(-0.5, -0.2)  # ducts run from the nipple towards the upper chest wall
    along = fx * np.cos(theta) + fy * np.sin(theta)
    across = -fx * np.sin(theta) + fy * np.cos(theta)
    f2 = (1.6 * along) ** 2 + across**2
    f0 = 1.0 / size
    tissue_filter = (f2 + f0**2) ** -0.75  # amplitude f^-1.5, power f^-3
    tissue_filter[0, 0] = 0.0
    fc = 28.0 / size
    strand_filter = np.exp(-0.5 * ((np.sqrt((6.0 * along) ** 2 + across**2) - fc) / (0.5 * fc)) ** 2)
    out = []
    for filt in (tissue_filter, strand_filter):
        field = sfft.irfft2(spec * filt.astype(np.float32), s=(size, size), workers=1)
        out.append((field - field.mean()) / field.std())
    tissue, band = out
    strands = np.exp(-((band / 0.12) ** 2))  # zero crossings of band-passed noise: thin curved lines
    return tissue.astype(np.float32), strands.astype(np.float32)


def _geometry(rng: np.random.Generator, size: int) -> dict:
    """Breast outline, pectoral muscle and derived distance maps, chest wall on the left (column 0)."""
    v = np.arange(size, dtype=np.float32)[:, None]
    u = np.arange(size, dtype=np.float32)[None, :]
    depth = size * rng.uniform(0.44, 0.56)
    vc = size * rng.uniform(0.56, 0.64)
    top_frac = rng.uniform(0.35, 0.6)  # breast width at the top edge / maximum width
    b_top = vc / (1 - top_frac**2) ** (1 / 1.25)
    b_bot = min(size * rng.uniform(0.3, 0.42), 0.99 * size - vc)
    phases = rng.uniform(0, 2 * np.pi, 3)
    wobble = 1 + 0.025 * sum(np.sin((k + 2) * np.pi * v / size + p) for k, p in enumerate(phases))
    t = np.where(v < vc, (vc - v) / b_top, (v - vc) / b_bot)
    power = np.where(v < vc, 1.25, 2.2)
    field = 1 - (u / (depth * wobble)) ** 2 - np.abs(t) ** power  # > 0 inside the breast
    gy, gx = np.gradient(field)
    skin_dist = field / np.maximum(np.hypot(gy, gx), 1e-6)  # signed distance to the skin, pixels
    top_depth = depth * top_frac
    pw, ph = top_depth * rng.uniform(0.6, 0.95), size * rng.uniform(0.38, 0.55)
    bulge = size * rng.uniform(0.0, 0.04)
    frac = np.clip(v / ph, 0, 1)
    pect = (pw * (1 - v / ph) + bulge * np.sin(np.pi * frac) - u) / np.hypot(1, pw / ph)
    return {"skin": skin_dist.astype(np.float32), "pect": pect.astype(np.float32), "vc": vc, "v": v, "u": u}


def _anatomy(rng: np.random.Generator, size: int, tissue: str, geo: dict) -> np.ndarray:
    """Background, breast (fat + glandular texture + strands, thickness roll-off, skin line), pectoral."""
    s = size / 1024
    texture, strands = _power_law_fields(rng, size)
    skin, pect, v = geo["skin"], geo["pect"], geo["v"]
    env = np.clip((skin - 30 * s) / (120 * s), 0, 1) * np.exp(-0.5 * ((v - geo["vc"] * 0.95) / (0.3 * size)) ** 2)
    gland = env * (1 / (1 + np.exp(-1.4 * (texture + _TISSUE_BIAS[tissue]))))
    fat = rng.uniform(0.38, 0.44)
    breast = fat + 0.44 * gland + 0.02 * strands * (1 - gland) + 0.02 * texture
    edge = np.clip(skin / (130 * s), 0, 1)
    thick = 0.2 + 0.8 * np.sqrt(1 - (1 - edge) ** 2)
    background = 0.025 + 0.008 * (v / size)
    inside = np.clip(skin + 0.5, 0, 1)
    img = background + inside * (breast * thick - background)
    w = max(1.0, 2.0 * s)
    img += 0.07 * np.exp(-0.5 * ((skin - w) / (0.7 * w)) ** 2) * (skin > -1.5)
    muscle = np.clip(pect / max(1.5 * s, 0.7) + 0.5, 0, 1) * inside
    pect_value = rng.uniform(0.7, 0.76) + 0.025 * texture + 0.06 * np.clip(pect / (150 * s), 0, 1)
    img += muscle * (pect_value - img)
    return img.astype(np.float32)


def _speck_shapes(rng: np.random.Generator, severity: str, radius: float, s: float) -> list[dict]:
    """Speck offsets (rows, cols from the cluster centre) and sizes: benign few/round/large, malignant many/small."""
    specks: list[dict] = []
    if severity == "B":
        count, sizes = rng.integers(2, 6), lambda: max(rng.uniform(2.0, 4.0) * s, 1.0)
    else:
        count, sizes = rng.integers(8, 21), lambda: max(rng.uniform(0.7, 1.5) * s, 0.7)
    linear = severity == "M" and rng.random() < 0.5
    angle = rng.uniform(0, np.pi)
    for attempt in range(400):
        if len(specks) == count:
            break
        if attempt % 40 == 39:  # crowded: let the cluster spread a little
            radius *= 1.15
        r = sizes()
        if linear:
            along, across = rng.uniform(-1, 1) * (radius - r), rng.normal(0, 0.12 * radius)
            dy, dx = along * np.sin(angle) + across * np.cos(angle), along * np.cos(angle) - across * np.sin(angle)
        elif severity == "M":
            dy, dx = rng.normal(0, 0.4 * radius, 2)
        else:
            rho, phi = (radius - r) * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
            dy, dx = rho * np.sin(phi), rho * np.cos(phi)
        crowded = any(np.hypot(dy - o["dy"], dx - o["dx"]) < 1.2 * (r + o["r"]) + 1 for o in specks)
        if crowded or np.hypot(dy, dx) + r > radius:
            continue
        shape = {"dy": float(dy), "dx": float(dx), "r": float(r), "aspect": 1.0, "turn": 0.0, "lobes": []}
        if severity == "M":  # pleomorphic: elongated, lobed outlines
            shape.update(aspect=rng.uniform(1.0, 2.2), turn=rng.uniform(0, np.pi))
            shape["lobes"] = [(k, rng.uniform(0, 0.25), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)]
        specks.append(shape)
    return specks


def _extent(shape: dict) -> float:
    """The largest distance of a speck's outline from its centre (elongation and lobes included)."""
    return shape["r"] * np.sqrt(shape["aspect"]) * (1 + sum(amp for _, amp, _ in shape["lobes"]))


def _stamp_speck(img: np.ndarray, row: float, col: float, shape: dict, contrast: float, ss: int = 8) -> None:
    """Add one speck, anti-aliased by averaging an ss x ss supersampled analytic shape per pixel."""
    r = shape["r"]
    reach = _extent(shape) + 1
    r0, r1 = max(int(np.floor(row - reach)), 0), min(int(np.ceil(row + reach)) + 1, img.shape[0])
    c0, c1 = max(int(np.floor(col - reach)), 0), min(int(np.ceil(col + reach)) + 1, img.shape[1])
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    dy = (np.arange(r0, r1)[:, None] + sub[None, :]).reshape(-1, 1) - row
    dx = (np.arange(c0, c1)[:, None] + sub[None, :]).reshape(1, -1) - col
    a, b = np.cos(shape["turn"]), np.sin(shape["turn"])
    p, q = (dx * a + dy * b) / np.sqrt(shape["aspect"]), (-dx * b + dy * a) * np.sqrt(shape["aspect"])
    dist, phi = np.hypot(p, q), np.arctan2(q, p)
    edge = r * (1 + sum(amp * np.cos(k * phi + ph) for k, amp, ph in shape["lobes"]))
    solid = np.clip((edge - dist) * ss + 0.5, 0, 1)  # malignant: a solid, sharp-edged fragment
    sphere = np.clip(1 - (dist / r) ** 4, 0, 1) ** 0.5  # benign: a dense round body with a smooth rim
    value = solid if shape["lobes"] else sphere
    cover = value.reshape(r1 - r0, ss, c1 - c0, ss).mean(axis=(1, 3))
    patch = img[r0:r1, c0:c1]
    headroom = 1 - patch  # attenuation adds less where the film is already bright; never reaches white
    patch += np.minimum(contrast * cover * headroom**0.8, 0.8 * headroom)


def _place_clusters(rng: np.random.Generator, img: np.ndarray, geo: dict, severities: list[str]) -> list[dict]:
    """Choose cluster centres deep inside the breast (away from skin and pectoral) and draw their specks."""
    size = img.shape[0]
    s = size / 1024
    clusters: list[dict] = []
    for severity in severities:
        radius = max((rng.uniform(6, 20) if severity == "B" else rng.uniform(14, 40)) * s, 3.0)
        depth = np.minimum(geo["skin"] - 60 * s, -geo["pect"] - 30 * s) - radius  # > 0: far from skin and muscle
        for _ in range(500):
            row, col = int(rng.integers(0, size)), int(rng.integers(0, size))
            apart = all(np.hypot(row - c["row"], col - c["col"]) > radius + c["r"] + 10 * s for c in clusters)
            if depth[row, col] > 0 and apart:
                break
        else:  # nowhere left that fits: take the deepest point, so the planned class is never dropped
            row, col = (int(i) for i in np.unravel_index(np.argmax(depth), depth.shape))
        specks = _speck_shapes(rng, severity, radius, s)
        contrast = rng.uniform(0.45, 0.7) if severity == "B" else rng.uniform(0.5, 0.75)
        for shape in specks:
            _stamp_speck(img, row + shape["dy"], col + shape["dx"], shape, contrast)
        reach = max(np.hypot(sp["dy"], sp["dx"]) + _extent(sp) for sp in specks)
        clusters.append({"severity": severity, "row": row, "col": col, "r": int(np.ceil(reach)) + 1, "specks": specks})
    return clusters


def _film_label(rng: np.random.Generator, img: np.ndarray, side: str, right: bool) -> None:
    """A bright label with dark block letters (side + 'ML') and maybe a tape strip, on the far side from the breast."""
    size = img.shape[0]
    cell = max(1, round(4 * size / 1024))
    text = [side, "ML"]
    h, w = cell * (7 * 2 + 9), cell * (5 * 2 + 1 + 6)
    top = int(size * rng.uniform(0.02, 0.08))
    left = int(size * rng.uniform(0.03, 0.08))
    left = size - left - w if not right else left  # right breast: chest wall right, label left
    label = np.full((h, w), rng.uniform(0.86, 0.93), np.float32)
    for line, word in enumerate(text):
        for i, ch in enumerate(word):
            glyph = np.array([[c == "1" for c in r] for r in _FONT[ch]], dtype=np.float32)
            glyph = np.kron(glyph, np.ones((cell, cell), np.float32))
            y, x = cell * (3 + line * 10), cell * (3 + i * 6)
            label[y : y + glyph.shape[0], x : x + glyph.shape[1]] -= 0.75 * glyph
    img[top : top + h, left : left + w] = label
    if rng.random() < 0.4:
        band = slice(0, int(size * rng.uniform(0.015, 0.03)))
        cols = slice(0, int(size * 0.3)) if right else slice(int(size * 0.7), size)
        img[band, cols] = np.maximum(img[band, cols], rng.uniform(0.22, 0.35))


def render_phantom_image(index: int, seed: int, size: int = DEFAULT_PHANTOM_SIZE) -> tuple[np.ndarray, list[dict]]:
    """Image `index` (1-based, mdbNNN) of the phantom: float32 [size, size] in [0, 1] and its annotations.

    Each annotation dict has image_id, tissue, abnormality (CALC/NORM), severity, x, y
    (origin bottom-left, as in Info.txt), radius, and specks: a list of
    {row, col, radius_px} in array coordinates (row 0 = top).
    """
    image_id = f"mdb{index:03d}"
    right = index % 2 == 1
    tissue, severities = image_plan(index, seed)
    rng = _rng(_TAG_IMAGE, seed, index, size)
    geo = _geometry(rng, size)
    img = _anatomy(rng, size, tissue, geo)
    clusters = _place_clusters(rng, img, geo, severities)
    img += rng.normal(0.0, 0.005, img.shape).astype(np.float32)  # film grain
    if right:  # rendered with the chest wall on the left; odd (right) breasts have it on the right
        img = img[:, ::-1].copy()
    _film_label(rng, img, "R" if right else "L", right)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)

    def to_col(c: float) -> float:
        return size - 1 - c if right else c

    annotations = []
    for number, cl in enumerate(clusters):
        specks = [
            {"row": cl["row"] + sp["dy"], "col": to_col(cl["col"] + sp["dx"]), "radius_px": sp["r"]}
            for sp in cl["specks"]
        ]
        x, y = int(to_col(cl["col"])), size - 1 - cl["row"]
        annotations.append(
            {
                "image_id": image_id,
                "tissue": tissue,
                "abnormality": "CALC",
                "severity": cl["severity"],
                "x": x,
                "y": y,
                "radius": cl["r"],
                "cluster": number,
                "specks": specks,
            }
        )
    if not annotations:
        annotations.append(
            {
                "image_id": image_id,
                "tissue": tissue,
                "abnormality": "NORM",
                "severity": "",
                "x": None,
                "y": None,
                "radius": None,
                "cluster": None,
                "specks": [],
            }
        )
    return img, annotations


def _info_text(annotations: list[dict], n: int, seed: int, size: int) -> bytes:
    header = [
        "              MAMMO-TF SYNTHETIC PHANTOM",
        "              MiniMammographic Database layout",
        "",
        f"Synthetic phantom made by mammo-tf: {n} images, seed {seed}, {size} x {size} pixels,",
        "8 bits per pixel. No patient data: every film is generated.",
        "",
        "=================================================================",
        "",
        "INFORMATION:",
        "",
        "1st column: reference number (odd = right breast, even = left breast of one patient).",
        "2nd column: background tissue: F - Fatty, G - Fatty-glandular, D - Dense-glandular.",
        "3rd column: class of abnormality: CALC - Calcification, NORM - Normal.",
        "4th column: severity: B - Benign, M - Malignant.",
        "5th,6th columns: x,y image-coordinates of the centre of the cluster.",
        "7th column: radius (in pixels) of a circle enclosing the cluster.",
        "",
        "Coordinate system origin is the bottom-left corner (row = height - 1 - y).",
        f"Each calcification speck is listed in {TRUTH_NAME}.",
        "",
        "=================================================================",
        "",
    ]
    lines = []
    for a in annotations:
        if a["abnormality"] == "NORM":
            lines.append(f"{a['image_id']} {a['tissue']} NORM ")
        else:
            lines.append(f"{a['image_id']} {a['tissue']} CALC {a['severity']} {a['x']} {a['y']} {a['radius']}")
    return ("\r\n".join(header + lines + ["", "=" * 65]) + "\r\n").encode("ascii")


def _truth_csv(annotations: list[dict]) -> bytes:
    rows = ["image_id,cluster,row,col,radius_px,severity"]
    for a in annotations:
        for sp in a["specks"]:
            rows.append(
                f"{a['image_id']},{a['cluster']},{sp['row']:.3f},{sp['col']:.3f},{sp['radius_px']:.3f},{a['severity']}"
            )
    return ("\n".join(rows) + "\n").encode("ascii")


def write_phantom(out: str | Path, n: int, seed: int = 0, size: int = DEFAULT_PHANTOM_SIZE) -> Path:
    """Write an n-image phantom in the MIAS layout to `out`, atomically (a failure leaves nothing behind)."""
    out = Path(out)
    if not 1 <= n <= MAX_N:
        raise MammoError(f"phantom: n must be between 1 and {MAX_N} images (got {n})")
    if size < MIN_SIZE:
        raise MammoError(f"phantom: size must be at least {MIN_SIZE} pixels (got {size})")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise located(out, "already exists and is not empty (choose a new --out folder)")
    annotations: list[dict] = []
    with atomic_dir(out) as tmp:
        for index in range(1, n + 1):
            pixels, found = render_phantom_image(index, seed, size)
            (tmp / f"{found[0]['image_id']}.pgm").write_bytes(encode_pgm(pixels, 8))
            annotations.extend(found)
        (tmp / "Info.txt").write_bytes(_info_text(annotations, n, seed, size))
        (tmp / TRUTH_NAME).write_bytes(_truth_csv(annotations))
    return out


def cached_phantom_dir() -> Path:
    """The default dataset (used when no --data is given), generated once into the cache."""
    out = cache_root() / f"phantom-v1-n{DEFAULT_PHANTOM_N}-s0-{DEFAULT_PHANTOM_SIZE}"
    if (out / "Info.txt").is_file():
        return out
    try:
        return write_phantom(out, DEFAULT_PHANTOM_N, seed=0, size=DEFAULT_PHANTOM_SIZE)
    except (MammoError, OSError):
        if (out / "Info.txt").is_file():  # another process finished it first
            return out
        raise
