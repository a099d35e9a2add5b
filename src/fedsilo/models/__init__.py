"""Model zoo: small PyTorch classifiers by name, or a user factory by import path."""

from fedsilo.models.params import Params, check_params, flatten, get_params, set_params, unflatten
from fedsilo.models.zoo import MODEL_NAMES, ModelSpec, build_model

__all__ = [
    "MODEL_NAMES",
    "ModelSpec",
    "Params",
    "build_model",
    "check_params",
    "flatten",
    "get_params",
    "set_params",
    "unflatten",
]
