"""Options shared by several commands (those the harness has too:
:mod:`edgeseg.device.cli_options`)."""

from __future__ import annotations

import json

import click

from edgeseg.device.data.folders import LAYOUTS

# model options that commands set from their own options and the data, never through -o
RESERVED = {"input_size": "--input-size", "channels": "--channels (or the data's own)",
            "num_classes": "--num-classes (or the data's own)"}


def parse_model_options(pairs: tuple[str, ...], option: str = "-o/--option") -> dict[str, object]:
    """``("alpha=0.5", "upsample=transpose", "dilation=[2,4]")`` -> {"alpha": 0.5, ...}.

    Values are read as JSON where they parse (numbers, true/false, lists), as strings otherwise.
    """
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=f"'{option}'")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, list):
            value = tuple(value)
        name = key.strip().replace("-", "_")
        if name in RESERVED:
            raise click.BadParameter(f"{name} is not a -o option: set it with {RESERVED[name]}",
                                     param_hint=f"'{option}'")
        options[name] = value
    return options


def compose(*decorators):
    """Apply several click decorators as one."""
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


model_option = click.option(
    "-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
    help="A model option, e.g. -o alpha=0.5 -o upsample=transpose (repeatable).")

input_size_option = click.option(
    "--input-size", type=click.IntRange(min=1, max=16384), default=256, show_default=True,
    help="Square input size in pixels.")

data_options = compose(
    click.option("--data", "source", default="synthetic-nuclei", show_default=True,
                 metavar="NAME|DIR",
                 help="synthetic-nuclei, synthetic-shapes, or a dataset folder."),
    click.option("--layout", type=click.Choice(LAYOUTS),
                 help="Folder layout (default: detected)."),
    click.option("--channels", type=click.Choice(["1", "3"]),
                 help="1 (grey) or 3 (RGB); default: the dataset's own."),
    click.option("--num-classes", type=click.IntRange(min=1),
                 help="Classes in the masks (default: from the dataset)."),
)


def _size(ctx, param, value):
    """``--input-size N`` or ``HxW`` -> (height, width), or None."""
    if value is None:
        return None
    from edgeseg.device.card import parse_size
    from edgeseg.device.errors import EdgesegError

    try:
        return parse_size(value)
    except EdgesegError as error:
        raise click.BadParameter(str(error).split(" (got")[0].replace("--input-size ", "")) \
            from None


def config_options(config_class):
    """The click options of a config dataclass's fields, each from the :class:`~converters.
    config.Option` in its metadata (its flag, what it takes, its help): the config is the one
    definition of the command's options, their defaults and their choices."""
    import dataclasses

    decorators = []
    for field in dataclasses.fields(config_class):
        option = field.metadata.get("option")
        if option is None:
            continue
        kwargs = {"help": option.help}
        if option.metavar:
            kwargs["metavar"] = option.metavar
        if option.takes == "flag":
            kwargs.update(is_flag=True, default=field.default)
        elif option.takes == "off-flag":
            kwargs.update(is_flag=True, flag_value=not field.default, default=field.default)
        elif option.takes == "size":
            kwargs.update(metavar="N|HxW", callback=_size)
        elif isinstance(option.takes, tuple):
            kwargs.update(type=click.Choice(option.takes), default=field.default,
                          show_default=field.default is not None)
        elif option.takes in (int, float):
            bounds = click.IntRange if option.takes is int else click.FloatRange
            kwargs.update(type=bounds(option.minimum, option.maximum), default=field.default,
                          show_default=field.default is not None)
        decorators.append(click.option(option.flag, field.name, **kwargs))
    return compose(*decorators)


def size_option(help_text: str, name: str = "--input-size", default: str | None = None):
    """A size option that takes ``256`` or ``144x256`` (height x width)."""
    return click.option(name, "input_size", metavar="N|HxW", callback=_size, help=help_text,
                        default=default, show_default=default is not None)


def _custom_objects(ctx, param, values) -> dict:
    """``--custom-objects`` -> the classes and functions the user's code defines, by name
    (:func:`edgeseg.keras_files.custom_objects_from`): a value the commands hand to every Keras
    load. (Importing the user's code is what lets its classes register themselves with Keras.)"""
    from edgeseg.device.errors import EdgesegError
    from edgeseg.keras_files import custom_objects_from

    try:
        return custom_objects_from(values)
    except EdgesegError as error:
        raise click.BadParameter(str(error).removeprefix("--custom-objects "),
                                 param_hint="'--custom-objects'") from None


keras_options = compose(
    click.option("--custom-objects", "custom_objects", multiple=True, metavar="FILE.py|MODULE:ATTR",
                 callback=_custom_objects,
                 help="Python code that defines a Keras model's custom layers (repeatable): a "
                      "file, a module, or module:attr (a class or a dict of them)."),
    click.option("--unsafe", is_flag=True,
                 help="Allow Keras models that carry code of their own (Lambda layers); only "
                      "for files you trust."),
)


def _target(ctx, param, value):
    if value is None:
        return None
    from benchmarks.remote import parse_target
    from edgeseg.device.errors import EdgesegError

    try:
        return parse_target(value)
    except EdgesegError as error:
        raise click.BadParameter(str(error).removeprefix("--on ")) from None


board_options = compose(
    click.option("--on", "on", metavar="ssh://[USER@]HOST[:PORT]", callback=_target,
                 help="Benchmark on this board over SSH (your ssh keys and ~/.ssh/config); it "
                      "needs Python with numpy and the runtime, nothing else."),
    click.option("--python", "board_python", metavar="PATH",
                 help="With --on: the board's Python [python3]."),
    click.option("--remote-dir", metavar="DIR",
                 help="With --on: where the temporary folder goes on the board [$TMPDIR or "
                      "/tmp]."),
    click.option("--ssh-config", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
                 help="With --on: an ssh config file instead of ~/.ssh/config (ssh -F)."),
    click.option("--install", is_flag=True,
                 help="With --on: pip-install what the board's Python lacks (numpy, the "
                      "runtime) into a venv in the temporary folder, removed with it."),
)


def board_from(on=None, board_python=None, remote_dir=None, ssh_config=None,
               install=False) -> dict | None:
    """The ``board`` keyword arguments of :func:`benchmarks.remote.bench_remote` from
    :func:`board_options` (None: run here)."""
    if on is None:
        for name, value in (("--python", board_python), ("--remote-dir", remote_dir),
                            ("--ssh-config", ssh_config), ("--install", install or None)):
            if value is not None:
                raise click.UsageError(f"{name} applies to a board: give it with --on")
        return None
    return {"target": on, "python": board_python or "python3", "remote_dir": remote_dir,
            "ssh_config": ssh_config, "install": install}
