"""The model zoo (imports TensorFlow on first use of a builder)."""

from edgeseg.models.zoo import create_model, get_builder, list_models, model_options

__all__ = ["create_model", "get_builder", "list_models", "model_options"]
