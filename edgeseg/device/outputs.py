"""What a command wrote into its ``--out``: a manifest, so that ``--force`` removes exactly that.

Every command that writes into an output folder (``train``, ``optimize``, ``run``, ``predict``,
``data synth``) claims each path in the folder's manifest (``.edgeseg-manifest.json``) *before*
it writes it, so a kill at any moment leaves nothing unaccounted for. ``--force`` removes the
claimed paths and nothing else: a file the user put under ``--out`` (beside the outputs, or in a
folder edgeseg writes into) stays, and a path the command must write that is already there and
is not claimed is refused, before any work, naming it.

Three kinds of claim:

- a file edgeseg writes itself (removed by ``--force``);
- a folder it makes to hold its files (removed when ``--force`` leaves it empty; one that was
  there before is never claimed);
- a tool's folder, written by TensorFlow (checkpoint backups, TensorBoard logs): edgeseg cannot
  name its files beforehand, so the folder is claimed whole, only when edgeseg makes it, and
  removed whole.

A folder claimed inside another command's output (``run``'s ``train/``) holds that command's own
manifest, which ``--force`` of the outer command clears first.

    >>> outputs = Outputs("runs/cells", "train")  # doctest: +SKIP
    >>> outputs.claim_file("model.keras")  # doctest: +SKIP
    >>> outputs.clear()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from edgeseg.device.errors import EdgesegError
from edgeseg.device.files import atomic_write_json, resolved

MANIFEST = ".edgeseg-manifest.json"
SCHEMA = "edgeseg.outputs/1"
KINDS = ("file", "folder", "tool")


class Outputs:
    """The manifest of one output folder (``root``) for one command."""

    def __init__(self, root, command: str):
        self.root, self.command = Path(root), command
        self.path = self.root / MANIFEST
        self.claims: dict[str, str] = {}  # relative POSIX path -> kind
        if self.path.is_file():
            try:
                saved = json.loads(self.path.read_text())
                self.claims = {str(k): v for k, v in saved.get("claims", {}).items()
                               if v in KINDS}
            except (ValueError, OSError, AttributeError):
                raise EdgesegError(f"{self.path}: not a manifest edgeseg can read; remove it "
                                   f"only if nothing under {self.root} is needed") from None

    # --- reading ---------------------------------------------------------------------------------
    def _relative(self, path) -> str:
        path = Path(path)
        full = path if path.is_absolute() else self.root / path
        try:
            return resolved(full).relative_to(resolved(self.root)).as_posix()
        except ValueError:
            raise EdgesegError(f"{path}: outside {self.root}, the output folder") from None

    def owns(self, path) -> bool:
        """Whether ``path`` is a claimed path or lies inside a claimed tool folder."""
        relative = self._relative(path)
        if relative in self.claims:
            return True
        return any(kind == "tool" and relative.startswith(claimed + "/")
                   for claimed, kind in self.claims.items())

    def cleared(self) -> list[Path]:
        """The paths :meth:`clear` would remove (those that exist)."""
        return [self.root / p for p in sorted(self.claims) if (self.root / p).exists()]

    def refuse_unowned(self, files=(), tools=()) -> None:
        """Refuse, before any work, paths this command will write (files, tool folders) that are
        already there and are not this folder's outputs; nothing is written."""
        for path in (*files, *tools):
            relative = self._relative(path)
            if (self.root / relative).exists() and not self.owns(relative):
                raise EdgesegError(f"{self.root / relative}: exists and edgeseg did not write it; "
                                   f"move it, or choose another --out (--force removes only what "
                                   f"edgeseg wrote)")

    # --- claiming --------------------------------------------------------------------------------
    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"schema": SCHEMA, "command": self.command,
                                      "claims": dict(sorted(self.claims.items()))})

    def claim_file(self, *paths) -> list[Path]:
        """Claim files this command is about to write; a file that is already there and is not
        this folder's output is refused (nothing is written then)."""
        new = {}
        for path in paths:
            relative = self._relative(path)
            full = self.root / relative
            if full.exists() and not self.owns(relative):
                raise EdgesegError(f"{full}: exists and edgeseg did not write it; move it, or "
                                   f"choose another --out (--force removes only what edgeseg "
                                   f"wrote)")
            new[relative] = "file"
            self._claim_parents(relative, new)
        self._add(new)
        for relative in new:  # the folders the files go in, made now that they are claimed
            (self.root / relative).parent.mkdir(parents=True, exist_ok=True)
        return [self.root / p for p in new if new[p] == "file"]

    def claim_folder(self, path, *, tool: bool = False) -> Path:
        """Claim a folder: one this command makes to hold its files, or (``tool``) one that
        TensorFlow fills (removed whole by :meth:`clear`), which must not be there unclaimed."""
        relative = self._relative(path)
        full = self.root / relative
        new = {}
        if tool:
            if full.exists() and not self.owns(relative):
                raise EdgesegError(f"{full}: exists and edgeseg did not write it; move it, or "
                                   f"choose another --out")
            new[relative] = "tool"
        elif not full.exists():
            new[relative] = "folder"
        self._claim_parents(relative, new)
        self._add(new)
        full.mkdir(parents=True, exist_ok=True)
        return full

    def _claim_parents(self, relative: str, new: dict) -> None:
        """The folders between the root and ``relative`` that do not exist yet are made here."""
        parent = Path(relative).parent
        while parent != Path("."):
            key = parent.as_posix()
            if not (self.root / key).exists() and key not in self.claims:
                new[key] = "folder"
            parent = parent.parent

    def _add(self, new: dict) -> None:
        if any(self.claims.get(k) != v for k, v in new.items()):
            self.claims.update({k: v for k, v in new.items() if k not in self.claims})
            self._save()

    # --- the rule for inputs ---------------------------------------------------------------------
    def check_inputs(self, inputs: dict, planned=()) -> None:
        """Refuse, before any work, an input (``{option: path}``) that ``--force`` would remove
        (a claimed file or tool folder, or a path inside one), or that holds a path this command
        writes (a claimed one, or one of ``planned``, relative to the root), naming both."""
        writes = {**self.claims, **{Path(p).as_posix(): "planned" for p in planned}}
        for option, given in inputs.items():
            if given is None:
                continue
            try:
                relative = self._relative(given)
            except EdgesegError:
                continue  # outside the output folder: nothing this command writes touches it
            for claimed, kind in writes.items():
                removed = kind in ("file", "tool") and (relative == claimed or
                                                        relative.startswith(claimed + "/"))
                holds = relative == "." or claimed.startswith(relative + "/") or \
                    (relative == claimed and kind in ("folder", "planned"))
                if removed:
                    raise EdgesegError(f"{option} {given}: --force would remove it ("
                                       f"{self.root / claimed} is an output of edgeseg "
                                       f"{self.command} there); move it out of {self.root}, "
                                       f"or choose another --out")
                if holds:
                    where = "into it" if relative == claimed else f"{self.root / claimed} inside it"
                    raise EdgesegError(f"{option} {given}: edgeseg {self.command} writes "
                                       f"{where}; choose another --out")

    # --- removing --------------------------------------------------------------------------------
    def clear(self) -> list[Path]:
        """Remove every claimed path (files, tool folders whole, made folders once empty; a
        claimed folder's own manifest first) and forget them (a made folder a user's file keeps
        stays claimed); returns what was removed."""
        removed, kept = [], {}
        for relative in sorted(self.claims, key=lambda p: p.count("/"), reverse=True):
            full, kind = self.root / relative, self.claims[relative]
            if kind == "file":
                if full.is_file() or full.is_symlink():
                    full.unlink()
                    removed.append(full)
            elif kind == "tool":
                if full.exists():
                    shutil.rmtree(full) if full.is_dir() else full.unlink()
                    removed.append(full)
            elif full.is_dir():
                if (full / MANIFEST).is_file():
                    removed += Outputs(full, self.command).clear()
                    (full / MANIFEST).unlink(missing_ok=True)
                try:
                    os.rmdir(full)  # only when empty: a user's file keeps its folder
                    removed.append(full)
                except OSError:
                    kept[relative] = kind  # still the folder edgeseg made: claimed on
        self.claims = kept
        self._save()
        return removed


__all__ = ["MANIFEST", "Outputs"]
