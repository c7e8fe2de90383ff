"""Blends of sr-x2-gan (the default sr-x2 until a blend was shipped) and its grainy-noise fine-tune, for the
validation sweep: w = (1 - alpha) * w_sr_x2_gan + alpha * w_fine_tune (workflows/blend.py says why).

    python reports/sr-grainy-diverse/interpolate.py ROBUST_MODEL OUT_DIR ALPHA [ALPHA ...]

ROBUST_MODEL: the fine-tune's generator (e.g. ~/mammo-runs/sr-grainy/run1/generator_gan.keras). Writes
OUT_DIR/blend-ALPHA/generator.keras with a config.json (the fine-tune's run config, plus the blend's recipe
and sr-x2-gan's noise gate), to be scored with `mammo-tf evaluate-sr --model OUT_DIR/blend-ALPHA/generator.keras
...`; no card (`mammo-tf ship-sr RUN --blend-with sr-x2-gan --alpha A` ships one). Run from the repository root.
"""

import json
import sys
from pathlib import Path

from mammo_tf.inference.noise_gate import model_noise_ceiling
from mammo_tf.inference.registry import load_model, model_id
from mammo_tf.workflows.blend import blend_weights

robust_path, out_root, alphas = Path(sys.argv[1]), Path(sys.argv[2]), [float(a) for a in sys.argv[3:]]
generator, clean_path, _ = load_model("sr-x2-gan", ("sr",), "blend")
clean, robust = generator.get_weights(), load_model(robust_path, ("sr",), "blend")[0].get_weights()
config = json.loads((robust_path.parent / "config.json").read_text())
for alpha in alphas:
    out = out_root / f"blend-{alpha:g}"
    out.mkdir(parents=True, exist_ok=True)
    generator.set_weights(blend_weights(clean, robust, alpha))
    generator.save(out / "generator.keras")
    recipe = {"alpha": alpha, "clean": model_id(clean_path), "robust": model_id(robust_path)}
    gate = {"noise_ceiling_greys": model_noise_ceiling(clean_path)}  # keeps sr-x2-gan's noise gate
    (out / "config.json").write_text(json.dumps({**config, **gate, "interpolation": recipe}, indent=2))
    print(out / "generator.keras")
