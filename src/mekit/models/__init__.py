"""Micro-expression recognition models, created by name: `create_model("ststnet", 3)`.

Every model carries a `ModelSpec` (`model.spec`, `get_spec(name)`) stating the input it
expects, which the data pipeline reads. Importing this package registers all models.
"""

from mekit.models import ststnet as _ststnet  # noqa: F401  (registers the model)
from mekit.models.registry import (
    ModelSpec,
    count_params,
    create_model,
    get_spec,
    list_models,
    register_model,
)

__all__ = [
    "ModelSpec",
    "count_params",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
]
