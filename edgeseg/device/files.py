"""Atomic writes: a file is either absent or complete, never half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it into place."""
    with atomic_file(path) as handle:
        handle.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_file(path):
    """A binary file handle on a temporary file beside ``path``, renamed into place (after fsync)
    when the block ends well and removed when it does not: for writers that stream, so that the
    whole content never has to be in memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(path)  # a full disk says which file it could not write
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path, *, replace: bool = False):
    """Fill a folder under a temporary name beside ``path``; it becomes ``path`` only if the block ends well.

    Yields the temporary folder. An existing empty ``path`` is replaced; a non-empty one only with
    ``replace=True`` (checked before the block runs, by the caller's wish, so that nothing is made
    in vain) and removed only after the new folder is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the folder gets the usual mode
    try:
        yield tmp
        if path.exists() and replace:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(path)
        raise


def sha256_of(path) -> str:
    """The SHA-256 of a file's bytes, read a megabyte at a time."""
    import hashlib

    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def resolved(path, what: str = "") -> Path:
    """``path`` made absolute with its links followed; a link that loops is one EdgesegError
    naming it (``what``: the option or argument that gave it)."""
    from edgeseg.device.errors import EdgesegError

    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as error:
        reason = "a symbolic link that loops" if "loop" in str(error).lower() else \
            (getattr(error, "strerror", None) or str(error))
        raise EdgesegError(f"{f'{what} ' if what else ''}{path}: {reason}") from None


MODEL_SUFFIXES = (".keras", ".h5", ".tflite", ".onnx")
MIN_FREE = 1 << 20  # bytes an output's disk must have free before any work starts


def check_output(path, *, inputs=(), option: str = "--out", folder: bool = False,
                 model: bool = False, kind: tuple[str, object] | None = None) -> Path:
    """Refuse an output path before any work starts, and return it (``~`` expanded).

    Refused: a path that is one of ``inputs`` or an input's card (``<input>.json``); for an output
    that is not a model (``model=False``: a JSON, a report), an existing model file or a model's
    card; a file output that is a folder, or a folder output that is a file; a path under a file;
    a place this process cannot write (read-only file system, permissions), found by creating and
    removing a file in the nearest folder that exists. ``kind``: ``(what, test)`` for a JSON
    output: an existing JSON file is replaced only when ``test(its content)`` says it is one of
    these (a bench report over a bench report, not over a training config). For a model output
    (``model=True``), an existing file that is not a model of its suffix, or a card beside it
    that edgeseg did not write (a user's notes named ``m.tflite``, their ``m.tflite.json``).
    """
    from edgeseg.device.errors import EdgesegError

    given = str(path)
    path = Path(os.path.expanduser(given))
    target = resolved(path, option)
    for source in inputs:
        if source is None:
            continue
        source = Path(os.path.expanduser(str(source)))
        for what, candidate in (("an input of this command", source),
                                ("the card of an input", source.with_name(source.name + ".json"))):
            if candidate.exists() and target == resolved(candidate):
                raise EdgesegError(f"{option} {given}: is {what} ({candidate}); writing there "
                                   f"would destroy it, choose another path")
        if source.is_dir() and path.exists() and not folder and \
                target.is_relative_to(resolved(source)):
            raise EdgesegError(f"{option} {given}: is a file of the input folder {source}; "
                               f"writing there would destroy it, choose another path")
    if not model and not folder and path.exists() and path.is_file():
        if path.suffix.lower() != ".json":
            raise EdgesegError(f"{option} {given}: exists and is not a JSON file; writing there "
                               f"would destroy it, choose another path")
        if path.suffix.lower() in MODEL_SUFFIXES:
            raise EdgesegError(f"{option} {given}: is a model file; writing there would destroy "
                               f"it, choose another path")
        beside = path.with_name(path.name[:-len(".json")]) if path.name.endswith(".json") else None
        if beside is not None and beside.suffix.lower() in MODEL_SUFFIXES and beside.exists():
            raise EdgesegError(f"{option} {given}: is the card of {beside}; writing there would "
                               f"destroy it, choose another path")
        if kind is not None:
            what, test = kind
            try:
                same = bool(test(json.loads(path.read_text())))
            except (ValueError, UnicodeDecodeError, OSError, TypeError, AttributeError):
                same = False
            if not same:
                raise EdgesegError(f"{option} {given}: exists and is not {what}; writing there "
                                   f"would destroy it, choose another path")
    if model:
        _refuse_other_files(path, option, given)
    if path.exists() and path.is_dir() != folder:
        raise EdgesegError(f"{option} {given}: is a {'file' if folder else 'folder'}, not a "
                           f"{'folder' if folder else 'file'}")
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise EdgesegError(f"{option} {given}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgeseg-write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
        stats = os.statvfs(existing)
    except OSError as error:
        raise EdgesegError(f"{option} {given}: cannot write in {existing} "
                           f"({error.strerror or error})") from None
    free = stats.f_bavail * stats.f_frsize
    if free < MIN_FREE:
        raise EdgesegError(f"{option} {given}: only {free // 1024} KiB free on the disk of "
                           f"{existing}")
    return path


# how each kind of model file begins (a .tflite's identifier is at offset 4; an .onnx written by
# any exporter starts with its ir_version field)
_MODEL_MAGIC = {".tflite": (4, b"TFL3"), ".onnx": (0, b"\x08"), ".keras": (0, b"PK\x03\x04"),
                ".h5": (0, b"\x89HDF\r\n\x1a\n")}


def _refuse_other_files(path: Path, option: str, given: str) -> None:
    """A model output may replace a model file and its edgeseg card, never another file."""
    from edgeseg.device.errors import EdgesegError

    offset, magic = _MODEL_MAGIC.get(path.suffix.lower(), (0, b""))
    head = b""
    if path.is_file():
        with open(path, "rb") as handle:
            head = handle.read(offset + len(magic))
    if path.is_file() and head[offset:] != magic:
        raise EdgesegError(f"{option} {given}: exists and is not a {path.suffix} model file; "
                           f"writing there would destroy it, choose another path")
    card = path.with_name(path.name + ".json")
    if card.is_file():
        try:
            ours = str(json.loads(card.read_text()).get("schema", "")).startswith("edgeseg.card")
        except (ValueError, UnicodeDecodeError, OSError, AttributeError):
            ours = False
        if not ours:
            raise EdgesegError(f"{option} {given}: {card} is not a model card edgeseg wrote; the "
                               f"card would replace it, choose another path")


def check_space(folder, needed: int, *, largest: int = 0, what: str = "the outputs") -> None:
    """Refuse, before any work, to write ``needed`` bytes (the largest file ``largest``) into
    ``folder`` when the disk has less free or the process may not write a file that large
    (``ulimit -f``): the same failure found after the work would waste it."""
    from edgeseg.device.errors import EdgesegError

    folder = Path(folder)
    probe = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise EdgesegError(f"{folder}: writing {what} takes at least {_mib(needed)}, and its "
                           f"disk has {_mib(free)} free; free some space or give another folder")
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):  # no such limit on this platform
        return
    if limit != resource.RLIM_INFINITY and largest > limit:
        raise EdgesegError(f"{folder}: writing {what} takes a file of at least "
                           f"{_mib(largest)}, over this shell's file size limit of {_mib(limit)} "
                           "(ulimit -f); raise it or write a smaller model")


def _mib(size: int) -> str:
    if size >= 2**20:
        return f"{size / 2**20:.1f} MiB"
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} bytes"


def eval_report(obj) -> bool:
    """Whether a parsed JSON is what ``edgeseg eval --json`` writes."""
    return isinstance(obj, dict) and {"model", "dice", "dice_per_class"} <= set(obj)


__all__ = ["atomic_dir", "atomic_file", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "check_output", "check_space", "eval_report", "resolved", "sha256_of"]
