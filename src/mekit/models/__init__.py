"""Micro-expression models, created by name: `create_model("ststnet", 3)`.

Every model carries a `ModelSpec` (`model.spec`, `get_spec(name)`) stating its task
(recognition, action units, spotting) and the input it expects, which the data pipeline reads.
Importing this package registers all models.
"""

# importing each family registers its models
from mekit.models import apex_neighbour as _apex_neighbour  # noqa: F401
from mekit.models import au_net as _au_net  # noqa: F401
from mekit.models import averaging as _averaging  # noqa: F401
from mekit.models import blend as _blend  # noqa: F401
from mekit.models import cnn_lstm as _cnn_lstm  # noqa: F401
from mekit.models import dtscnn as _dtscnn  # noqa: F401
from mekit.models import keyframe_gru as _keyframe_gru  # noqa: F401
from mekit.models import me_resnet as _me_resnet  # noqa: F401
from mekit.models import mobilevitv3 as _mobilevitv3  # noqa: F401
from mekit.models import off_apexnet as _off_apexnet  # noqa: F401
from mekit.models import resnet_attention as _resnet_attention  # noqa: F401
from mekit.models import softnet as _softnet  # noqa: F401
from mekit.models import ststnet as _ststnet  # noqa: F401
from mekit.models.explain import grad_cam
from mekit.models.registry import (
    CLASSIFIER_TASKS,
    ModelSpec,
    Task,
    count_params,
    create_model,
    get_spec,
    list_models,
    register_model,
    uv_strain_spec,
)

__all__ = [
    "CLASSIFIER_TASKS",
    "ModelSpec",
    "Task",
    "grad_cam",
    "count_params",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
    "uv_strain_spec",
]
