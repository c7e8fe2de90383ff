"""Using trained models on real inputs: tiling, whole-image SR, sampling, detection."""
