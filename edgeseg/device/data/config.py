"""Where a dataset comes from and how it is cut into training inputs: :class:`DataConfig`."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from edgeseg.device.jsonconfig import JsonConfig


@dataclass(frozen=True)
class DataConfig(JsonConfig):
    """Where the data comes from and how it is cut into training inputs.

    ``source`` is a built-in name (``synthetic-nuclei``, ``synthetic-shapes``) or a folder.
    """

    source: str = "synthetic-nuclei"
    input_size: int = 128  # training crops; the model is fully convolutional and runs at any size
    layout: str | None = None  # folders: detected when None
    channels: int | None = None  # None: the dataset's own (1 for nuclei/grey, 3 for RGB)
    num_classes: int | None = None  # None: from the dataset (class list or largest id)
    # folders: random "crop"s at the images' own resolution (the model then runs tile by tile),
    # or "resize" whole images to input_size (and every image at inference); "auto": crop unless
    # the objects are larger than a crop (measured on the masks)
    mode: str = "auto"
    val_source: str | None = None  # a second folder for validation; else a seeded split
    val_fraction: float = 0.2
    n_train: int = 400  # built-in datasets: how many samples to draw
    n_val: int = 64
    image_size: int | None = None  # built-in datasets: image side; None = input_size
    seed: int = 0
    cache_mb: int = 2048  # folders: decode into memory below this size, else stream from disk

    def absolute(self) -> DataConfig:
        """The same data with its folders as absolute paths, as a card or a run records them: a
        relative ``d0`` read again from another folder would be another dataset (or none)."""
        from edgeseg.device.data.synthetic import SYNTHETIC

        def whole(source: str | None) -> str | None:
            if source is None or source in SYNTHETIC:
                return source
            path = os.path.expanduser(source)
            if not os.path.exists(path) and not any(sep in source for sep in "/\\."):
                return source  # a mistyped built-in name stays a name: its error lists them
            return os.path.abspath(path)

        return replace(self, source=whole(self.source), val_source=whole(self.val_source))


__all__ = ["DataConfig"]
