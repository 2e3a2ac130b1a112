"""Run directories: every long run writes its config, arrays, figures and metrics here.

All writes are atomic (temp file + rename), so a run killed at any point leaves
each file either complete or absent, and a re-run can resume from what exists.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from otgen.checkpoint import atomic_write

__all__ = ["RunDir", "package_versions", "claim_run_dir"]

_PACKAGES = ("otgen", "jax", "jaxlib", "flax", "optax", "numpy", "scipy", "pot")


def package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__array__"):  # jax arrays
        return np.asarray(obj).tolist()
    return obj


class RunDir:
    """A directory holding one run's outputs (``config.json``, ``metrics.json``, arrays, PNGs)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return self.file(name).exists()

    def write_json(self, name: str, obj: Any) -> Path:
        text = json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n"
        return atomic_write(self.file(name), lambda f: f.write(text.encode()))

    def read_json(self, name: str) -> Any:
        try:
            return json.loads(self.file(name).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.file(name)} is not valid JSON: {e}") from e

    def save_array(self, name: str, arr) -> Path:
        arr = np.asarray(arr)
        return atomic_write(self.file(name), lambda f: np.save(f, arr, allow_pickle=False))

    def load_array(self, name: str) -> np.ndarray:
        try:
            return np.load(self.file(name), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{self.file(name)} is corrupt or not a plain numeric .npy: {e}") from e

    def copy_from(self, source: str | os.PathLike, name: str) -> Path:
        """Copy the file ``source`` into this directory as ``name``, atomically."""
        import shutil

        with open(source, "rb") as src:
            return atomic_write(self.file(name), lambda f: shutil.copyfileobj(src, f))

    def write_config(self, config: Any, seed: int | None = None) -> Path:
        """``config.json``: every hyperparameter, the seed, and the package versions."""
        doc = {"config": _jsonable(config), "seed": seed, "versions": package_versions(),
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        return self.write_json("config.json", doc)


def claim_run_dir(out: str | os.PathLike, identity: dict, stored_identity: Callable[[dict], dict],
                  overwrite: bool = False) -> RunDir:
    """The :class:`RunDir` at ``out`` for a run defined by ``identity``, refusing to mix two runs.

    A new or empty directory is used as is; one whose ``config.json`` holds the same
    identity (``stored_identity(config_doc)``) is resumed; another identity is refused,
    naming each field that differs, unless ``overwrite`` (which deletes that run first).
    A file, or a non-empty directory without ``config.json``, is always refused.  Fields
    present on one side only come from another otgen version and are not differences.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is an existing file, not a directory; choose another --out")
    if path.is_dir() and any(path.iterdir()):
        if not (path / "config.json").exists():
            raise ValueError(f"--out {path} is a non-empty directory that holds no otgen run (no config.json); "
                             "choose another --out")
        stored = _jsonable(stored_identity(RunDir(path).read_json("config.json")))
        want = json.loads(json.dumps(_jsonable(identity)))  # tuples -> lists, as read back
        diff = sorted(k for k in set(stored) & set(want) if stored[k] != want[k])
        if diff:
            what = "; ".join(f"{k}: {stored[k]!r} there, {want[k]!r} now" for k in diff)
            if not overwrite:
                raise ValueError(f"--out {path} holds another run ({what}); choose another --out, "
                                 "or add --overwrite to replace it")
            shutil.rmtree(path)
    return RunDir(path)
