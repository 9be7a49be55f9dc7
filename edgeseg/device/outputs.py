"""What a command wrote into its ``--out``: a manifest, so that ``--force`` removes exactly that.

Every command that writes into an output folder (``train``, ``optimize``, ``run``, ``predict``,
``data synth``) claims each path in the folder's manifest (``.edgeseg-manifest.json``) *before*
it writes it, so a kill leaves nothing it wrote unaccounted for (but the randomly named scratch
files of its atomic writes). ``--force`` removes the paths the same command claimed there and
nothing else: a file the user put under ``--out`` (beside the outputs, or in a folder edgeseg
writes into) stays, another command's outputs stay, and a path the command must write that is
already there and is not its own is refused, before any work, naming it.

Three kinds of claim:

- a file edgeseg writes itself (removed by ``--force``);
- a folder it makes to hold its files (removed when ``--force`` leaves it empty; one that was
  there before is never claimed);
- a tool's folder, written by TensorFlow (checkpoint backups, TensorBoard logs): edgeseg cannot
  name its files beforehand, so the folder is claimed whole, only when edgeseg makes it, and
  removed whole.

A folder claimed inside another command's output (``run``'s ``train/``) holds that stage's own
manifest, which ``--force`` of the outer command clears first. Claims are names relative to the
folder (``models/int8.tflite``); the inputs a command checks are paths as the user gave them.

    >>> outputs = Outputs("runs/cells", "train")  # doctest: +SKIP
    >>> outputs.claim_file("model.keras")  # doctest: +SKIP
    >>> outputs.clear()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath

from edgeseg.device.errors import EdgesegError
from edgeseg.device.files import atomic_write_json, resolved

MANIFEST = ".edgeseg-manifest.json"
SCHEMA = "edgeseg.outputs/1"
KINDS = ("file", "folder", "tool")


def _valid(name: str) -> bool:
    """A claim's name: relative, inside the folder, not the folder itself."""
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and \
        name not in (".", MANIFEST)


class Outputs:
    """The manifest of one output folder (``root``), as ``command`` writes into it."""

    def __init__(self, root, command: str):
        self.root, self.command = Path(root), command
        self.path = self.root / MANIFEST
        self.claims: dict[str, dict] = {}  # name -> {"kind": ..., "by": command}
        if self.path.is_file():
            try:
                saved = json.loads(self.path.read_text()).get("claims", {})
                self.claims = {str(name): {"kind": claim["kind"], "by": str(claim["by"])}
                               for name, claim in saved.items()
                               if _valid(str(name)) and claim.get("kind") in KINDS}
            except (ValueError, OSError, AttributeError, KeyError, TypeError):
                raise EdgesegError(f"{self.path}: not a manifest edgeseg can read; remove it "
                                   f"only if nothing under {self.root} is needed") from None

    # --- names and paths -----------------------------------------------------------------------
    @staticmethod
    def _name(name) -> str:
        text = PurePosixPath(str(name).replace(os.sep, "/")).as_posix()
        if not _valid(text):
            raise ValueError(f"{name!r}: not a name inside an output folder")
        return text

    def _inside(self, path) -> str | None:
        """A path as given (absolute, or relative to the working folder) as a name inside the
        folder, or None when it lies outside."""
        try:
            relative = resolved(path).relative_to(resolved(self.root))
        except ValueError:
            return None
        return relative.as_posix()

    def _claim(self, name: str) -> dict | None:
        """The claim ``name`` falls under: its own, or a tool folder's it lies in."""
        if name in self.claims:
            return self.claims[name]
        return next((claim for claimed, claim in self.claims.items()
                     if claim["kind"] == "tool" and name.startswith(claimed + "/")), None)

    def owns(self, path) -> bool:
        """Whether ``path`` (as given) is this command's output here."""
        name = self._inside(path)
        claim = None if name in (None, ".") else self._claim(name)
        return claim is not None and claim["by"] == self.command

    # --- claiming ------------------------------------------------------------------------------
    def _refuse(self, name: str) -> None:
        full = self.root / name
        if not (full.exists() or full.is_symlink()):
            return
        claim = self._claim(name)
        if claim is not None and claim["by"] == self.command:
            return
        if claim is not None:
            raise EdgesegError(f"{full}: written here by edgeseg {claim['by']}; edgeseg "
                               f"{self.command} writes into another --out")
        how = "" if self.path.is_file() else \
            " (the folder has no manifest of what edgeseg wrote: an earlier edgeseg, or you)"
        raise EdgesegError(f"{full}: exists and edgeseg did not write it{how}; move it, or "
                           f"choose another --out (--force removes only what edgeseg wrote)")

    def refuse_unowned(self, files=(), tools=()) -> None:
        """Refuse, before any work, names this command will write (files, tool folders) that are
        already there and are not its outputs here; nothing is written."""
        for name in (*files, *tools):
            self._refuse(self._name(name))

    def claim_file(self, *names) -> list[Path]:
        """Claim files this command is about to write (names inside the folder), and make the
        folders they go in; one that is there and is not this command's output is refused."""
        new = {}
        for name in map(self._name, names):
            self._refuse(name)
            new[name] = "file"
            self._claim_parents(name, new)
        self._add(new)
        for name in new:
            (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        return [self.root / name for name, kind in new.items() if kind == "file"]

    def claim_folder(self, name, *, tool: bool = False) -> Path:
        """Claim a folder: one this command makes to hold its files, or (``tool``) one that
        TensorFlow fills (removed whole by :meth:`clear`), which must not be there unclaimed."""
        name = self._name(name)
        full = self.root / name
        new = {}
        if tool:
            self._refuse(name)
            new[name] = "tool"
        elif not full.exists() and name not in self.claims:
            new[name] = "folder"
        self._claim_parents(name, new)
        self._add(new)
        full.mkdir(parents=True, exist_ok=True)
        return full

    def _claim_parents(self, name: str, new: dict) -> None:
        """The folders between the root and ``name`` that do not exist yet are made here."""
        parent = PurePosixPath(name).parent
        while parent != PurePosixPath("."):
            key = parent.as_posix()
            if not (self.root / key).exists() and key not in self.claims:
                new[key] = "folder"
            parent = parent.parent

    def _add(self, new: dict) -> None:
        added = {name: {"kind": kind, "by": self.command} for name, kind in new.items()
                 if name not in self.claims}
        if added:
            self.claims.update(added)
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, {"schema": SCHEMA, "claims": dict(sorted(
                self.claims.items()))})

    # --- the rule for inputs -------------------------------------------------------------------
    def check_inputs(self, inputs: dict, planned=()) -> None:
        """Refuse, before any work, an input (``{option: path as given}``) that ``--force`` would
        remove (a claimed file or tool folder, a path inside one, or an output of a stage folder
        with its own manifest), that holds a path this command writes (a claimed one, or a name
        of ``planned``), or that holds this output folder itself; naming both."""
        root = resolved(self.root)
        writes = {name: claim["kind"] for name, claim in self.claims.items()}
        writes.update({self._name(name): writes.get(self._name(name), "planned")
                       for name in planned})
        for option, given in inputs.items():
            if given is None:
                continue
            source = resolved(given, option)
            if source.is_dir() and source != root and root.is_relative_to(source):
                raise EdgesegError(f"{option} {given}: --out {self.root} lies inside it; choose "
                                   f"an --out outside the input folder")
            name = self._inside(given)
            if name is None:
                continue  # outside the output folder: nothing this command writes touches it
            for claimed, kind in sorted(writes.items(), key=lambda item: item[1] == "planned"):
                inside = name == claimed or name.startswith(claimed + "/")
                removed = inside and kind in ("file", "tool")
                if inside and kind in ("folder", "planned") and name != claimed:
                    nested = self.root / claimed
                    removed = (nested / MANIFEST).is_file() and \
                        Outputs(nested, "")._claim(PurePosixPath(name).relative_to(
                            claimed).as_posix()) is not None
                if removed:
                    raise EdgesegError(f"{option} {given}: is an output edgeseg wrote in "
                                       f"{self.root}, which this command replaces or removes ("
                                       f"{self.root / claimed}); move it out of {self.root}, or "
                                       f"choose another --out")
                if name == "." or claimed.startswith(name + "/") or \
                        (name == claimed and kind in ("folder", "planned")):
                    where = "into it" if name == claimed else f"{self.root / claimed} inside it"
                    raise EdgesegError(f"{option} {given}: edgeseg {self.command} writes "
                                       f"{where}; choose another --out")

    # --- removing ------------------------------------------------------------------------------
    def _safe(self, name: str) -> bool:
        """Whether ``name`` lies inside the folder without passing through a symbolic link (a
        claimed folder the user replaced by a link to elsewhere is not followed)."""
        path = self.root
        for part in PurePosixPath(name).parts[:-1]:
            path = path / part
            if path.is_symlink():
                return False
        return self._inside(self.root / name) is not None or (self.root / name).is_symlink()

    def clear(self, everyone: bool = False) -> list[Path]:
        """Remove what this command claimed here (``everyone``: every command's; a claimed
        folder's own manifest is cleared whole first): files, tool folders whole, made folders
        once empty (a made folder a user's file keeps stays claimed). Returns what was removed."""
        removed = []
        mine = {name: claim for name, claim in self.claims.items()
                if everyone or claim["by"] == self.command}
        for name in sorted(mine, key=lambda n: n.count("/"), reverse=True):
            full, kind = self.root / name, mine[name]["kind"]
            if not self._safe(name):
                continue
            if kind == "file":
                if full.is_file() or full.is_symlink():
                    full.unlink()
                    removed.append(full)
            elif kind == "tool":
                if full.is_symlink() or full.is_file():
                    full.unlink()
                    removed.append(full)
                elif full.is_dir():
                    shutil.rmtree(full)
                    removed.append(full)
            elif full.is_dir() and not full.is_symlink():
                if (full / MANIFEST).is_file():
                    removed += Outputs(full, self.command).clear(everyone=True)
                    (full / MANIFEST).unlink(missing_ok=True)
                try:
                    os.rmdir(full)  # only when empty: a user's file keeps its folder
                    removed.append(full)
                except OSError:
                    continue  # still the folder edgeseg made: claimed on
            del self.claims[name]
        if self.path.is_file() or self.claims:
            atomic_write_json(self.path, {"schema": SCHEMA, "claims": dict(sorted(
                self.claims.items()))})
        return removed

    def stage_manifests(self, names) -> list[Path]:
        """The folders among ``names`` (a command's stage folders) that hold a manifest of their
        own, claimed here or not: what a ``--force`` of the whole clears too."""
        return [self.root / name for name in names if (self.root / name / MANIFEST).is_file()]


__all__ = ["MANIFEST", "Outputs"]
