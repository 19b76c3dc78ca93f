"""Models: AVE-Net, AVOL-Net, Shuffle-and-Learn, Odd-One-Out, colorization tracker.

Importing this package registers every model module listed below.
"""

from avlearn.models import ave_net, avol_net, colorizer, odd_one_out, shuffle_learn  # noqa: F401  (each registers its models)
from avlearn.models._registry import create_model, list_models, model_from_config, register_model

__all__ = ["create_model", "list_models", "model_from_config", "register_model"]
