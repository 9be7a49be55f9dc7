"""The model card: what every artifact says about itself, read and written only here.

A card is a JSON object stored as ``<file>.json`` beside the artifact (``model.keras.json``), so a
model can be used without the code or the config that made it: its input size and channels, how
to normalise images, its class names, how it was made, what it scored.

Keys (more may be added, none renamed): ``schema``, ``format``, ``variant``, ``input_size``
([height, width] it was trained/converted at; Keras models run at any multiple of ``stride``),
``channels``, ``num_classes``, ``class_names``, ``normalization``, ``source`` (what it was made
from), ``recipe`` (how), ``metrics`` (validation Dice, IoU, ...), ``macs``, ``params``.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.files import atomic_write_json

SCHEMA = "edgeseg.card/1"
EMBEDDED_KEY = "edgeseg.card"  # the TFLite metadata name / ONNX metadata_props key inside files
NORMALIZATION = "float32 RGB or grey in [0, 1]: pixel / 255"


def card_path(artifact) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def make_card(**fields) -> dict:
    """A card with the schema and the default normalisation filled in."""
    return {"schema": SCHEMA, "normalization": NORMALIZATION, **fields}


def write_card(artifact, card: dict) -> Path:
    """Write ``<artifact>.json`` atomically."""
    return atomic_write_json(card_path(artifact), {"schema": SCHEMA, **card})


def read_card(artifact) -> dict:
    """The card beside an artifact, or {} when it has none; a corrupt card is an error."""
    path = card_path(artifact)
    if not path.exists():
        return {}
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EdgesegError(f"{path}: not a valid model card ({error})") from None
    if not isinstance(card, dict):
        raise EdgesegError(f"{path}: not a valid model card (not a JSON object)")
    return card
