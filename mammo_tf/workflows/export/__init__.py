"""SavedModel export for TensorFlow Serving: explicit signatures, integer version folders, models.config.

    export_model(model, name, version=None, out="saved_models/serving") -> <out>/<name>/<version>/

One job per module:
    signatures.py  what each model type serves (named signatures, sample checks); the EXPORTERS table
    precision.py   the float32 copy of a model trained under mixed_bfloat16
    verify.py      the fresh-process check of a written SavedModel against the Keras model
    serving.py     model names, integer version folders, `<out>/models.config`
    publish.py     export_model: load, write, verify, record (assets.extra/mammo_export.json), publish
"""

from mammo_tf.models.precision import float32_copy
from mammo_tf.workflows.export.precision import dtype_policies
from mammo_tf.workflows.export.publish import METADATA, export_info, export_model
from mammo_tf.workflows.export.serving import (
    DEFAULT_OUT,
    NAME_PATTERN,
    SERVING_ROOT,
    check_name,
    models_config_text,
    served_models,
    versions,
    write_models_config,
)
from mammo_tf.workflows.export.signatures import EXPORTERS, MAX_COUNT, Exporter, find_exporter
from mammo_tf.workflows.export.verify import FLOAT_TOLERANCE, INT_TOLERANCE, VERIFY_TIMEOUT_S, Check, verify_export

__all__ = [
    "DEFAULT_OUT",
    "EXPORTERS",
    "FLOAT_TOLERANCE",
    "INT_TOLERANCE",
    "MAX_COUNT",
    "METADATA",
    "NAME_PATTERN",
    "SERVING_ROOT",
    "VERIFY_TIMEOUT_S",
    "Check",
    "Exporter",
    "check_name",
    "dtype_policies",
    "export_info",
    "export_model",
    "find_exporter",
    "float32_copy",
    "models_config_text",
    "served_models",
    "verify_export",
    "versions",
    "write_models_config",
]
