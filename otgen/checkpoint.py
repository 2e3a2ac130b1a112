"""Atomic, pickle-free checkpoints of JAX pytrees.

A checkpoint is one ``.npz`` file: every leaf is stored as a plain array under
``leaf_00000``, ``leaf_00001``, ... and a JSON manifest (stored as a uint8
array, so ``np.load(allow_pickle=False)`` reads everything) records the key path,
shape and dtype of each leaf plus free-form metadata (model name, config, step).

Writes go to a temporary file in the same directory followed by ``os.replace``,
so a crash mid-write leaves the previous checkpoint intact.  Reads check the
zip CRCs, the manifest, and (given a template pytree) every key, shape and
dtype, raising :class:`CheckpointError` with the reason.

``save_pytree(..., codecs=...)`` stores chosen leaves in a compact lossy form
(:mod:`otgen.codecs`: bfloat16, log-quantised, ...) and deflates the file: the
checkpoints a long run carries from one machine to the next in git.  The manifest
names each leaf's codec and ``load_pytree`` decodes it back to the template's dtype.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from otgen import codecs as _codecs

__all__ = ["CheckpointError", "save_pytree", "load_pytree", "load_metadata", "load_codecs", "atomic_write",
           "array_fingerprint", "check_training_metadata"]

_MANIFEST = "__manifest__"
_UMASK = os.umask(0o022)  # read the process umask (os.umask can only read it by setting it) ...
os.umask(_UMASK)  # ... and put it back
_FORMAT = "otgen-checkpoint-v1"
_FORMAT_CODECS = "otgen-checkpoint-v2"  # leaves may carry a codec (v1 files read as all-exact)


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not match what was expected."""


def array_fingerprint(x: np.ndarray) -> str:
    """A short hash of an array's shape and bytes: checkpoints record the data they were made from."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(x.shape).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def check_training_metadata(path, meta: dict, *, kind: str, what: str, config: dict,
                            data_digest: str | None) -> None:
    """Refuse to resume a training checkpoint of another kind, configuration or data set.

    ``meta`` is the checkpoint's metadata with ``kind``, ``config`` and ``data`` (the training
    set's :func:`array_fingerprint`); ``config`` the current run's comparable settings.
    """
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path} is not a {what} checkpoint (kind {meta.get('kind')!r}); "
                              "use another run directory")
    have = meta.get("config", {})
    diff = sorted(k for k in set(config) | set(have) if config.get(k) != have.get(k))
    if diff:
        detail = ", ".join(f"{k}: checkpoint {have.get(k)!r} vs now {config.get(k)!r}" for k in diff)
        raise CheckpointError(f"{path} was written with another configuration ({detail}); "
                              "use another run directory (otgen toy: --overwrite)")
    if data_digest is not None and meta.get("data") != data_digest:
        raise CheckpointError(f"{path} was trained on different data (fingerprint mismatch)")


def atomic_write(path: str | os.PathLike, write_fn) -> Path:
    """Call ``write_fn(fileobj)`` on a temp file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from the user's group
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _is_prng_key(leaf) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _to_numpy(leaf) -> tuple[np.ndarray, bool]:
    if _is_prng_key(leaf):
        return np.asarray(jax.random.key_data(leaf)), True
    return np.asarray(leaf), False


def save_pytree(path: str | os.PathLike, tree: Any, metadata: dict | None = None, codecs=None) -> Path:
    """Atomically write ``tree`` (any pytree of arrays/scalars) and JSON-able ``metadata``.

    ``codecs(key_path_string, array) -> name`` picks an :mod:`otgen.codecs` codec per leaf (``"exact"``
    keeps it); with ``codecs`` the file is deflated too.
    """
    leaves_with_paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    arrays, entries = {}, []
    for i, (key_path, leaf) in enumerate(leaves_with_paths):
        arr, is_key = _to_numpy(leaf)
        where = jax.tree_util.keystr(key_path)
        if arr.dtype == object:
            raise CheckpointError(f"leaf {where} is not numeric (dtype object)")
        name = f"leaf_{i:05d}"
        entry = {"path": where, "shape": list(arr.shape), "dtype": arr.dtype.str, "prng_key": is_key}
        codec = "exact" if codecs is None or is_key else codecs(where, arr)
        if codec == "exact":
            arrays[name] = arr
        else:
            try:
                parts = _codecs.encode(codec, arr)
            except ValueError as e:
                raise CheckpointError(f"leaf {where}: {e}") from e
            arrays.update({f"{name}.{part}": a for part, a in parts.items()})
            entry.update(codec=codec, parts=sorted(parts))
        entries.append(entry)
    manifest = {"format": _FORMAT if codecs is None else _FORMAT_CODECS, "leaves": entries,
                "metadata": metadata or {}}
    try:
        blob = json.dumps(manifest).encode()
    except TypeError as e:
        raise CheckpointError(f"checkpoint metadata is not JSON-serialisable: {e}") from e
    arrays[_MANIFEST] = np.frombuffer(blob, dtype=np.uint8)
    write = np.savez if codecs is None else np.savez_compressed
    return atomic_write(path, lambda f: write(f, **arrays))


def _manifest(z, path: Path) -> dict:
    if _MANIFEST not in z.files:
        raise CheckpointError(f"{path} is not an otgen checkpoint (no manifest)")
    manifest = json.loads(z[_MANIFEST].tobytes().decode())
    if manifest.get("format") not in (_FORMAT, _FORMAT_CODECS):
        raise CheckpointError(f"{path}: unknown checkpoint format {manifest.get('format')!r}")
    return manifest


def _leaf(z, i: int, entry: dict) -> np.ndarray:
    name = f"leaf_{i:05d}"
    codec = entry.get("codec", "exact")
    if codec == "exact":
        return z[name]
    parts = {p: z[f"{name}.{p}"] for p in entry.get("parts", [])}
    return _codecs.decode(codec, parts, entry["shape"], np.dtype(entry["dtype"]))


def _read(path: Path, leaves: bool = True) -> tuple[dict, list[np.ndarray]]:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:  # lazy: only the members asked for are read
            manifest = _manifest(z, path)
            arrays = [_leaf(z, i, e) for i, e in enumerate(manifest["leaves"])] if leaves else []
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {e}") from e
    for entry, arr in zip(manifest["leaves"], arrays):
        if list(arr.shape) != entry["shape"] or arr.dtype.str != entry["dtype"]:
            raise CheckpointError(f"checkpoint {path}: leaf {entry['path']} does not match its manifest")
    return manifest, arrays


def load_metadata(path: str | os.PathLike) -> dict:
    """A checkpoint's metadata alone (step, curve so far, ...), without reading its arrays: what a
    report of running jobs needs from a checkpoint of tens of MB."""
    return _read(Path(path), leaves=False)[0]["metadata"]


def load_codecs(path: str | os.PathLike) -> dict[str, str]:
    """``{key_path: codec}`` of a checkpoint's lossy leaves (empty for an exact checkpoint)."""
    manifest, _ = _read(Path(path), leaves=False)
    return {e["path"]: e["codec"] for e in manifest["leaves"] if e.get("codec", "exact") != "exact"}


def load_pytree(path: str | os.PathLike, like: Any = None) -> tuple[Any, dict]:
    """Read a checkpoint written by :func:`save_pytree`.

    With ``like`` (a template pytree) the stored leaves are put back into that
    structure; every key path, shape and dtype must match, else
    :class:`CheckpointError`.  Without it, returns a flat ``{key_path: array}`` dict.
    Returns ``(tree, metadata)``.
    """
    path = Path(path)
    manifest, leaves = _read(path)
    entries = manifest["leaves"]

    def restore(entry, arr):
        return jax.random.wrap_key_data(arr) if entry["prng_key"] else arr

    if like is None:
        return {e["path"]: restore(e, a) for e, a in zip(entries, leaves)}, manifest["metadata"]

    template, treedef = jax.tree_util.tree_flatten_with_path(like)
    if len(template) != len(entries):
        raise CheckpointError(
            f"checkpoint {path} has {len(entries)} arrays but the expected structure has {len(template)}"
            " (saved by another model or configuration?)")
    out = []
    for (key_path, ref), entry, arr in zip(template, entries, leaves):
        want_path = jax.tree_util.keystr(key_path)
        if want_path != entry["path"]:
            raise CheckpointError(f"checkpoint {path}: found {entry['path']} where {want_path} was expected")
        ref_arr, ref_is_key = _to_numpy(ref)
        if tuple(ref_arr.shape) != arr.shape or ref_arr.dtype != arr.dtype or ref_is_key != entry["prng_key"]:
            raise CheckpointError(
                f"checkpoint {path}: {want_path} has shape {arr.shape} dtype {arr.dtype}, "
                f"expected {tuple(ref_arr.shape)} {ref_arr.dtype}")
        out.append(restore(entry, arr))
    return jax.tree_util.tree_unflatten(treedef, out), manifest["metadata"]
