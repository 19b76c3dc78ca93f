"""Models: AVE-Net, AVOL-Net, Shuffle-and-Learn, Odd-One-Out, colorization tracker.

Importing this package registers every model module listed below.
"""

import importlib

from avlearn.models._registry import create_model, list_models, register_model

_MODEL_MODULES = ["ave_net", "avol_net", "shuffle_learn", "odd_one_out", "colorizer"]

for _name in _MODEL_MODULES:
    try:
        importlib.import_module(f"avlearn.models.{_name}")
    except ModuleNotFoundError as _exc:  # a method not built yet
        if _exc.name != f"avlearn.models.{_name}":
            raise

__all__ = ["create_model", "list_models", "register_model"]
