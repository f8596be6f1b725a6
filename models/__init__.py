"""Models: the TT-RNN family on raw pixels, plain RNN baselines, QRNN and YouTube-8M baselines.

Use the registry: `models.create_model(name, **config)`, `models.list_models()`.
"""

from models.registry import create_model, list_models, model_config_class, register_model

__all__ = ["create_model", "list_models", "model_config_class", "register_model"]
