"""The model card: what every artifact says about itself, read and written only here.

A card is a JSON object stored as ``<file>.json`` beside the artifact (``model.keras.json``), so a
model can be used without the code or the config that made it: its input size and channels, how
to normalise images, its class names, how it was made, what it scored.

Keys (more may be added, none renamed): ``schema``, ``format``, ``variant``, ``input_size``
([height, width] it was trained/converted at; Keras models run at any multiple of ``stride``),
``channels``, ``num_classes``, ``class_names``, ``normalization`` (a :class:`Normalization` as a
dict), ``input_fit`` (``tile`` or ``resize``: how an image of another size reaches the model),
``input_layout`` (``NHWC``, or ``NCHW`` for a file exported from PyTorch), ``output`` (which
output of a multi-output model: a name or an index), ``output_kind`` (``probabilities`` or
``logits``: a sigmoid for one channel, a softmax for more, is then applied),
``source`` (what it was made from), ``recipe`` (how), ``metrics`` (validation Dice, IoU, ...),
``status`` (``ok``, or ``failed`` with ``failure``: a trained model that learned nothing),
``macs``, ``params``.

The I/O contract is defined here (:class:`Contract`); :mod:`edgeseg.device.preprocess` and
:class:`edgeseg.device.runtime.EdgeModel` apply it (numpy only, on the device). A model without a
card gets one from a sidecar its user writes once, ``<file>.json`` (``{"input_layout": "NCHW",
"output_kind": "logits", "normalization": {"kind": "meanstd", "mean": [...], "std": [...]}}``),
or from command-line options.

    >>> Normalization.parse("percentile").describe()
    'per-image percentiles 1-99.8 to 0-1'
    >>> normalization_of({"normalization": "float32 RGB or grey in [0, 1]: pixel / 255"}).kind
    'scale'
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from edgeseg.device.errors import EdgesegError
from edgeseg.device.files import atomic_write_json

SCHEMA = "edgeseg.card/1"
EMBEDDED_KEY = "edgeseg.card"  # the TFLite metadata name / ONNX metadata_props key inside files

NORMALIZATIONS = ("scale", "percentile", "meanstd", "none")
# How an image whose size differs from the model's input reaches it: ``tile`` runs the model on
# overlapping windows at the image's own resolution (models trained on native-resolution crops),
# ``resize`` scales the whole image to the input and the prediction back (models trained on
# whole images resized to their input).
INPUT_FITS = ("tile", "resize")


@dataclass(frozen=True)
class Normalization:
    """How raw pixels become the model's float32 input; every choice is an affine map per image.

    - ``scale``: pixel / the type's maximum (255 for 8-bit, 65535 for 16-bit; a float image's
      own maximum, at least 1): [0, 1].
    - ``percentile``: per image, the ``low``-th percentile to 0 and the ``high``-th to 1 (the
      fluorescence-microscopy convention of csbdeep and StarDist; not clipped).
    - ``meanstd``: (pixel / type maximum - ``mean``) / ``std``, per channel (fixed values).
    - ``none``: the raw pixel values as floats (0-255 for 8-bit images), for a model that
      rescales or normalises inside (a Keras ``Rescaling`` layer, keras.applications'
      preprocessing, a MediaPipe graph).
    """

    kind: str = "scale"
    low: float = 1.0
    high: float = 99.8
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.kind not in NORMALIZATIONS:
            raise EdgesegError(f"--normalize must be auto or one of {', '.join(NORMALIZATIONS)} "
                               f"(got {self.kind!r})")
        if self.kind == "percentile" and not 0 <= self.low < self.high <= 100:
            raise EdgesegError(f"--normalize percentile: need 0 <= low < high <= 100 (got "
                               f"{self.low:g}, {self.high:g})")
        if self.kind == "meanstd":
            if not self.mean or not self.std or len(self.mean) != len(self.std):
                raise EdgesegError("--normalize meanstd: give as many means as deviations, "
                                   "e.g. meanstd:0.485,0.456,0.406/0.229,0.224,0.225")
            # on pixels scaled to [0, 1]: anything far outside these bounds is a typo
            if not all(math.isfinite(v) and abs(v) <= 1e3 for v in self.mean) or \
                    not all(math.isfinite(v) and 1e-4 <= v <= 1e3 for v in self.std):
                raise EdgesegError("--normalize meanstd: means must be finite (|mean| <= 1000) "
                                   "and deviations positive (1e-4 to 1000), on pixels scaled to "
                                   "[0, 1]")

    @classmethod
    def parse(cls, text: str) -> "Normalization":
        """``scale``, ``percentile``, ``percentile:1,99.8``, ``meanstd:M[,M,M]/S[,S,S]``."""
        kind, colon, args = text.strip().partition(":")
        if colon and not args:
            raise EdgesegError(f"--normalize {text}: give values after ':' or none at all")
        try:
            if kind == "percentile" and args:
                low, high = (float(v) for v in args.split(","))
                return cls("percentile", low, high)
            if kind == "meanstd" and args:
                means, _, stds = args.partition("/")
                return cls("meanstd", mean=tuple(float(v) for v in means.split(",")),
                           std=tuple(float(v) for v in stds.split(",")))
        except ValueError:
            raise EdgesegError(f"--normalize {text}: not of the form percentile:LOW,HIGH or "
                               f"meanstd:M,M,M/S,S,S") from None
        if args:
            raise EdgesegError(f"--normalize {text}: {kind} takes no values")
        return cls(kind)

    @classmethod
    def from_dict(cls, value) -> "Normalization":
        """From a card's ``normalization`` (a dict; the old string form means ``scale``)."""
        if not isinstance(value, dict):
            return cls()
        try:
            return cls(str(value.get("kind", "scale")), float(value.get("low", 1.0)),
                       float(value.get("high", 99.8)),
                       tuple(value["mean"]) if value.get("mean") is not None else None,
                       tuple(value["std"]) if value.get("std") is not None else None)
        except (TypeError, ValueError, EdgesegError) as error:
            reason = str(error).split(": ", 1)[-1] if isinstance(error, EdgesegError) else \
                "not numbers"
            raise EdgesegError(f"the model card's normalization {value!r} is not valid "
                               f"({reason})") from None

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "description": self.describe()}
        if self.kind == "percentile":
            out.update(low=self.low, high=self.high)
        if self.kind == "meanstd":
            out.update(mean=list(self.mean), std=list(self.std))
        return out

    def describe(self) -> str:
        if self.kind == "percentile":
            return f"per-image percentiles {self.low:g}-{self.high:g} to 0-1"
        if self.kind == "meanstd":
            values = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
            return f"(pixel/max - {values(self.mean)}) / {values(self.std)}"
        if self.kind == "none":
            return "raw pixel values as floats (0-255 for 8-bit): the model normalises inside"
        return ("pixel / type maximum (255 for 8-bit, 65535 for 16-bit, a float image's own "
                "maximum) to 0-1")


def normalization_of(card: dict) -> Normalization:
    """The normalisation a model expects, from its card (``scale`` when it says none)."""
    return Normalization.from_dict(card.get("normalization"))


def contract_note(card: dict) -> str | None:
    """What is assumed for a model whose card does not state its input contract, else None."""
    if isinstance(card.get("normalization"), dict):
        return None
    if card:
        return None  # an older edgeseg card: pixel / 255 and tiles, as edgeseg then did
    return ("no model card (in the file or beside it as <file>.json): assuming pixel / 255 "
            "and tiles at the image's resolution")


def input_fit_of(card: dict) -> str:
    """``tile`` or ``resize``; a card from before ``input_fit`` existed says it by the mode its
    training read the folder in (``resize`` was then the default for folders), else ``tile``."""
    fit = card.get("input_fit")
    if fit in INPUT_FITS:
        return fit
    data = ((card.get("recipe") or {}).get("data") or {})
    source = data.get("source") or ""
    if data.get("mode", "resize") == "resize" and source and not source.startswith("synthetic-"):
        return "resize"
    return "tile"


LAYOUTS = ("NHWC", "NCHW")
MAX_SIDE = 16384  # the largest model input side edgeseg converts, trains or runs
OUTPUT_KINDS = ("probabilities", "logits")


def contract(card: dict) -> dict:
    """The I/O-contract keys of a card, to copy into the card of a file made from it.

    The layout and the output selection are the source file's own (a converted file is NHWC with
    one output) and are not copied; normalisation, fit and output kind are."""
    keys = {"normalization": normalization_of(card).to_dict(), "input_fit": input_fit_of(card)}
    if output_kind_of(card) is not None:
        keys["output_kind"] = output_kind_of(card)
    if isinstance(card.get("input_stats"), dict):  # what the model was trained on (preprocess)
        keys["input_stats"] = card["input_stats"]
    return keys


def input_layout_of(card: dict) -> str | None:
    """``NHWC`` or ``NCHW`` when the card states it, else None (the runtime detects it)."""
    layout = str(card.get("input_layout") or "").upper()
    return layout if layout in LAYOUTS else None


def output_kind_of(card: dict) -> str | None:
    """``probabilities`` or ``logits`` when the card states it, else None (detected)."""
    kind = card.get("output_kind")
    return kind if kind in OUTPUT_KINDS else None


def detect_layout(shape) -> str:
    """The layout of a 4-D image input whose card does not say: ``NCHW`` when its second
    dimension is a channel count (1, 3 or 4) and its last is not (PyTorch's exports), else NHWC.

        >>> detect_layout([1, 3, None, None]), detect_layout([1, 256, 256, 3])
        ('NCHW', 'NHWC')
    """
    shape = list(shape)
    if len(shape) == 4 and shape[1] in (1, 3, 4) and shape[3] not in (1, 3, 4):
        return "NCHW"
    return "NHWC"


def parse_size(text) -> tuple[int, int]:
    """``"256"`` or ``256`` -> (256, 256); ``"144x256"`` -> (144, 256) (height x width)."""
    if isinstance(text, (tuple, list)):
        height, width = (int(v) for v in text)
    else:
        parts = str(text).lower().replace("\u00d7", "x").split("x")
        try:
            height, width = (int(parts[0]), int(parts[0])) if len(parts) == 1 else \
                (int(parts[0]), int(parts[1]))
            if len(parts) > 2:
                raise ValueError
        except ValueError:
            raise EdgesegError(f"--input-size must be N or HxW, e.g. 256 or 144x256 "
                               f"(got {text!r})") from None
    if height < 1 or width < 1:
        raise EdgesegError(f"--input-size must be positive (got {text!r})")
    if max(height, width) > MAX_SIDE:
        raise EdgesegError(f"--input-size {height}x{width}: sides above {MAX_SIDE} are not "
                           f"supported (a model input that large does not fit a runtime's "
                           f"buffers; tile the image instead)")
    return height, width


def failed_note(card: dict) -> str | None:
    """``its card says training failed (why)`` for a model whose training (or whose source's,
    for a converted file) the guard failed, else None: its scores and masks mean little."""
    for where in (card, card.get("source") if isinstance(card.get("source"), dict) else {}):
        if where.get("status") == "failed":
            return f"its card says training failed ({where.get('failure') or 'no reason given'})"
    return None


def size_of(card: dict) -> tuple[int, int] | None:
    """The (height, width) the card's model was trained or converted at, if it says."""
    size = card.get("input_size")
    if size is None:
        return None
    if isinstance(size, (list, tuple)) and len(size) in (1, 2) and \
            all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        return (int(size[0]), int(size[-1]))
    raise EdgesegError(f"the card's input_size must be [height, width] (got {size!r})")


def with_overrides(card: dict, *, normalize: str | None = None, input_layout: str | None = None,
                   output=None, output_kind: str | None = None, input_fit: str | None = None,
                   class_names=None) -> dict:
    """The card with the contract keys a user gave on the command line put over it (checked)."""
    card = dict(card)
    if normalize is not None:
        card["normalization"] = Normalization.parse(normalize).to_dict()
    if input_layout is not None:
        if input_layout.upper() not in LAYOUTS:
            raise EdgesegError(f"--input-layout must be NHWC or NCHW (got {input_layout!r})")
        card["input_layout"] = input_layout.upper()
    if output is not None:
        card["output"] = str(output)
    if output_kind is not None:
        if output_kind not in OUTPUT_KINDS:
            raise EdgesegError(f"output kind must be one of {', '.join(OUTPUT_KINDS)} "
                               f"(got {output_kind!r})")
        card["output_kind"] = output_kind
    if input_fit is not None:
        if input_fit not in INPUT_FITS:
            raise EdgesegError(f"--input-fit must be tile or resize (got {input_fit!r})")
        card["input_fit"] = input_fit
    if class_names is not None:
        card["class_names"] = list(class_names)
    return card


def card_path(artifact) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def make_card(**fields) -> dict:
    """A card with the schema and the default contract (``scale``, ``tile``) filled in."""
    return {"schema": SCHEMA, "normalization": Normalization().to_dict(), "input_fit": "tile",
            **fields}


def write_card(artifact, card: dict) -> Path:
    """Write ``<artifact>.json`` atomically."""
    return atomic_write_json(card_path(artifact), {"schema": SCHEMA, **card})


def parse_embedded(raw, where) -> dict:
    """The card stored inside a model file (``raw``: the TFLite metadata buffer or the ONNX
    metadata_props value under :data:`EMBEDDED_KEY`), or {} when there is none; ``where`` names
    the file in the error for a card that is not JSON."""
    if not raw:
        return {}
    try:
        card = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EdgesegError(f"{where}: the {EMBEDDED_KEY} metadata is not valid JSON") from None
    return card if isinstance(card, dict) else {}


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
