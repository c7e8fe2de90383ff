"""Ship an SR model whose weights blend a clean model and its degradation-robust fine-tune.

Why: a model fine-tuned on degradation-diverse LR (train-sr --lr-degradations diverse --init-from MODEL) stops
sharpening other scanners' noise into specks but gives up part of the clean-film gain, and no statistic of
the input tells grainy noise from tissue (docs/results-sr.md), so a gate cannot route between the two.
Started from the clean model, the fine-tune stays in its basin, and the straight line between their weights
is a family of working models (network interpolation, as in Wang et al.'s DNI): alpha = 0 is the clean model,
1 the fine-tune. alpha is chosen on validation films (the scanner grid), and the card records it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mammo_tf.errors import MammoError, located

RUN_FILES = ("config.json", "state.json", "metrics.jsonl", "metrics.json")  # what the card's training record reads
BLEND_MODEL = "generator_blend.keras"


def blend_weights(clean: list[np.ndarray], robust: list[np.ndarray], alpha: float) -> list[np.ndarray]:
    """(1 - alpha) * clean + alpha * robust, weight by weight (float32 arrays of equal shapes, in one order)."""
    return [((1.0 - alpha) * a + alpha * b).astype(a.dtype) for a, b in zip(clean, robust, strict=True)]


def ship_sr_blend(
    run_dir: str | Path,
    data: str | Path | None,
    out_root: str | Path,
    *,
    clean: str | Path,
    alpha: float,
    name: str = "sr-x2",
    max_images: int | None = None,
) -> Path:
    """Write out_root/name: the run's GAN generator blended with the `clean` SR model at `alpha` in (0, 1).

    The card is ship_sr's: the run's training record (its config gains an `interpolation` record: alpha, both
    models' ids), evaluate-sr on `data`'s test patients and on the phantom. The blend keeps the clean model's
    noise gate (it is part clean model). MammoError (one line, nothing written) for an alpha outside (0, 1), a
    run without generator_gan.keras, or two models of different architectures.
    """
    from mammo_tf.evaluation.sr_eval import evaluate_sr
    from mammo_tf.inference.noise_gate import model_noise_ceiling
    from mammo_tf.inference.registry import load_model, model_id
    from mammo_tf.training.sr_trainer import GAN_MODEL
    from mammo_tf.workflows.cards import write_card

    if not 0.0 < alpha < 1.0:
        raise MammoError(f"--alpha {alpha}: a blend needs 0 < alpha < 1 (0 is the clean model, 1 the run's)")
    run_dir, out_root = Path(run_dir), Path(out_root)
    command = "ship-sr --blend-with"
    generator, clean_path, _ = load_model(clean, ("sr",), command)
    robust_path = run_dir / GAN_MODEL
    if not robust_path.is_file():
        raise located(run_dir, f"no {GAN_MODEL} to blend (a finished train-sr run)")
    robust = load_model(robust_path, ("sr",), command)[0]
    ours, theirs = generator.get_weights(), robust.get_weights()
    if [w.shape for w in ours] != [w.shape for w in theirs]:
        raise located(robust_path, f"not the architecture of {model_id(clean_path)}: the two cannot be blended")
    generator.set_weights(blend_weights(ours, theirs, alpha))

    out_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".ship-sr-blend-", dir=out_root))
    try:
        for file in RUN_FILES:
            if (run_dir / file).is_file():
                shutil.copy2(run_dir / file, scratch / file)
        model_file = scratch / BLEND_MODEL
        generator.save(model_file)
        recipe = {"alpha": alpha, "clean": model_id(clean_path), "robust": model_id(robust_path)}
        gate = {"noise_ceiling_greys": model_noise_ceiling(clean_path)}  # the run's own would shadow it
        for file, extra in (("config.json", {**gate, "interpolation": recipe}), ("metrics.json", gate)):
            if (scratch / file).is_file():
                record = json.loads((scratch / file).read_text())
                (scratch / file).write_text(json.dumps({**record, **extra}, indent=2))
        report = scratch / "report"
        test = evaluate_sr(model_file, data, split="test", max_images=max_images, out=report)
        phantom = evaluate_sr(model_file, None, split="test", max_images=max_images)
        note = (
            f"Default `upscale` model: the weights (1 - {alpha:g}) x `{model_id(clean_path)}` + {alpha:g} x this "
            f"run's GAN generator `{model_id(robust_path)}` (network interpolation)."
        )
        return write_card(scratch, model_file, name, out_root, test, phantom, note, report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
