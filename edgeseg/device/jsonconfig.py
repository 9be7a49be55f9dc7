"""A frozen dataclass saved as JSON beside the artifact it made, and read back to resume.

    >>> @dataclass(frozen=True)
    ... class Settings(JsonConfig):
    ...     steps: int = 300
    >>> Settings.from_dict(Settings(steps=10).to_dict())
    Settings(steps=10)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass  # noqa: F401 - the example above
from pathlib import Path


class JsonConfig:
    """``to_dict``/``to_json``/``from_dict`` for a frozen dataclass; fields that are configs of
    their own are named by :meth:`nested` and rebuilt from their dicts."""

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def nested(cls) -> dict[str, type]:
        """{field: its config class} for the fields that hold configs."""
        return {}

    @classmethod
    def from_dict(cls, data: dict):
        data = cls._upgrade(dict(data))
        nested = cls.nested()
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            sub = nested.get(f.name)
            kwargs[f.name] = sub.from_dict(value) if sub and isinstance(value, (dict, bool)) \
                else value
        return cls(**kwargs)

    @classmethod
    def _upgrade(cls, data: dict) -> dict:
        """Keys of configs written by earlier versions, in today's terms."""
        return data


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_config(config: JsonConfig, path) -> Path:
    from edgeseg.device.files import atomic_write_text

    return atomic_write_text(path, config.to_json() + "\n")


def load_config(cls, path):
    return cls.from_dict(json.loads(Path(path).read_text()))


__all__ = ["JsonConfig", "load_config", "save_config"]
