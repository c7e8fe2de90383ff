"""Orchestration across stages: the augmentation study, shipping models with cards, export for serving.

The layer above evaluation (tests/test_import_layers.py): these modules train, run inference and evaluate;
only the CLI imports them.
"""
