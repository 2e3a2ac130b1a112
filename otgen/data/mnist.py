"""MNIST and Fashion-MNIST from their IDX files: a strict parser, checksums, and a file look-up.

``load_mnist(split, data_dir=None, dataset="mnist")`` returns ``(images, labels)``: uint8
images ``(n, 28, 28)`` in file order and int64 labels ``(n,)``.  ``dataset="fashion"``
reads Fashion-MNIST (Zalando), whose four files carry the same names as MNIST's.

Where the files are looked for, in order:

1. ``data_dir`` (the ``--data-dir`` option),
2. ``$OTGEN_DATA_DIR`` (MNIST) / ``$OTGEN_FASHION_DIR`` (Fashion-MNIST),
3. the cache directory ``$XDG_CACHE_HOME/otgen/mnist`` (or ``.../fashion-mnist``; default
   ``~/.cache/otgen/...``),

each holding ``train-images-idx3-ubyte.gz`` etc., gzipped or raw.  If none has
them, the official files are downloaded into the cache (checksum verified,
atomic rename); without a network the error says exactly where to put them.

Every file is parsed strictly: magic number, element type, number of
dimensions, each dimension and the byte length must all agree, so a truncated
or corrupted file raises :class:`MNISTError` and never yields a partial dataset.
Files with an official name are also checked against the official SHA-256 of their
*decompressed* bytes, so a recompressed copy (Debian's ``dataset-fashion-mnist``) is
accepted and MNIST files offered as Fashion-MNIST (or the reverse) are refused.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from otgen.checkpoint import atomic_write

__all__ = ["MNISTError", "SPLITS", "SOURCES", "parse_idx", "read_idx", "find_mnist_dir", "load_mnist",
           "cache_dir", "to_unit_float"]

# split -> (images file stem, labels file stem)
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# SHA-256 of the official MNIST files, gzipped as distributed and decompressed.
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# Public mirrors of the original files (yann.lecun.com itself no longer serves them reliably).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# SHA-256 of the decompressed Fashion-MNIST files (zalandoresearch/fashion-mnist; equal to the
# SHA256SUMS.uncompressed of Debian's recompressed copy).
FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


@dataclasses.dataclass(frozen=True)
class IDXSource:
    """Where one IDX dataset lives and how its files are recognised."""

    title: str
    raw_sha256: dict  # file stem -> SHA-256 of the decompressed file
    mirrors: tuple[str, ...]
    env_var: str  # a directory named by this environment variable is searched
    cache_name: str  # ~/.cache/otgen/<cache_name>


SOURCES = {
    "mnist": IDXSource("MNIST", {k: v for k, v in SHA256.items() if not k.endswith(".gz")}, MIRRORS,
                       "OTGEN_DATA_DIR", "mnist"),
    "fashion": IDXSource("Fashion-MNIST", FASHION_SHA256,
                         ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
                         "OTGEN_FASHION_DIR", "fashion-mnist"),
}

# IDX element-type code -> big-endian numpy dtype
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


class MNISTError(ValueError):
    """An MNIST file is missing, truncated, corrupt, or not what was expected."""


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of one (uncompressed) IDX file into an array in native byte order.

    Layout: two zero bytes, a type code, the number of dimensions ``k``, then
    ``k`` big-endian uint32 sizes, then exactly ``prod(sizes)`` elements.
    """
    if len(data) < 4:
        raise MNISTError(f"{name}: {len(data)} bytes is too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise MNISTError(f"{name}: bad IDX magic number {data[:4].hex()} (must start with 0000)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise MNISTError(f"{name}: unknown IDX element type 0x{code:02x}")
    if ndim == 0:
        raise MNISTError(f"{name}: IDX file declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MNISTError(f"{name}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise MNISTError(f"{name}: IDX file {what}: {len(data)} bytes, header {shape} implies {expected}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _source(dataset: str) -> IDXSource:
    if dataset not in SOURCES:
        raise ValueError(f"IDX dataset must be one of {', '.join(SOURCES)}, got {dataset!r}")
    return SOURCES[dataset]


def _decompress(raw: bytes, path: Path) -> bytes:
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise MNISTError(f"{path}: corrupt or truncated gzip data ({e})") from e


def read_idx(path: str | os.PathLike, verify: bool = True, dataset: str = "mnist") -> np.ndarray:
    """Read an IDX file, gzipped (detected by content) or raw.

    With ``verify`` a file bearing an official name must decompress to the official bytes of
    ``dataset`` (SHA-256); the other dataset's file of the same name is named as such.
    """
    path = Path(path)
    source = _source(dataset)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise MNISTError(f"cannot read {path}: {e}") from e
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    data = _decompress(raw, path)
    if verify and stem in source.raw_sha256 and _sha256(data) != source.raw_sha256[stem]:
        other = [s.title for s in SOURCES.values() if s is not source and s.raw_sha256.get(stem) == _sha256(data)]
        why = (f"it is the {other[0]} file of that name -- point --data-dir at the {source.title} files"
               if other else "the file is corrupt or truncated -- delete it and fetch it again")
        raise MNISTError(f"{path}: the decompressed SHA-256 {_sha256(data)} does not match the official "
                         f"{source.title} {source.raw_sha256[stem]}; {why}")
    return parse_idx(data, name=str(path))


def cache_dir(dataset: str = "mnist") -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "otgen" / _source(dataset).cache_name


def _candidate_dirs(data_dir, dataset: str = "mnist") -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir).expanduser())
    env = _source(dataset).env_var
    if os.environ.get(env):
        dirs.append(Path(os.environ[env]).expanduser())
    dirs.append(cache_dir(dataset))
    return dirs


def _locate(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _download(stem: str, target_dir: Path, timeout: float = 30.0, dataset: str = "mnist") -> Path:
    """Fetch ``stem.gz`` from the first mirror that answers; verify; rename into place."""
    name = stem + ".gz"
    source = _source(dataset)
    errors = []
    for mirror in source.mirrors:
        try:
            with urllib.request.urlopen(mirror + name, timeout=timeout) as r:
                blob = r.read()
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            errors.append(f"{mirror}: {e}")
            continue
        try:
            ok = _sha256(_decompress(blob, Path(mirror + name))) == source.raw_sha256[stem]
        except MNISTError:
            ok = False
        if not ok:
            errors.append(f"{mirror}: checksum mismatch")
            continue
        return atomic_write(target_dir / name, lambda f: f.write(blob))
    raise OSError("; ".join(errors))


def _missing_message(split: str, dirs: list[Path], why: str, dataset: str = "mnist") -> str:
    names = ", ".join(f"{s}.gz" for s in SPLITS[split])
    places = "\n".join(f"  - {d}" for d in dirs)
    source = _source(dataset)
    return (f"{source.title} {split} files not found ({names}). Looked in:\n{places}\n"
            f"Download failed: {why}\n"
            f"Put the four official {source.title} IDX files (gzipped or raw) in one of these directories, "
            f"e.g. pass --data-dir DIR or set {source.env_var}=DIR.")


def find_mnist_dir(split: str = "train", data_dir=None, download: bool = True, dataset: str = "mnist") -> Path:
    """The first directory in the look-up order holding both files of ``split``."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    dirs = _candidate_dirs(data_dir, dataset)
    for d in dirs:
        if all(_locate(d, stem) for stem in SPLITS[split]):
            return d
    if not download:
        raise FileNotFoundError(_missing_message(split, dirs, "downloading disabled", dataset))
    target = cache_dir(dataset)
    try:
        for stem in SPLITS[split]:
            if _locate(target, stem) is None:
                _download(stem, target, dataset=dataset)
    except OSError as e:
        raise FileNotFoundError(_missing_message(split, dirs, str(e), dataset)) from e
    return target


def load_mnist(split: str, data_dir=None, *, download: bool = True, verify: bool = True,
               dataset: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of the ``"train"`` or ``"test"`` split of ``dataset`` ("mnist" or
    "fashion"), in file order.

    ``images``: uint8 ``(n, 28, 28)``; ``labels``: int64 ``(n,)`` in 0..9.  ``verify``
    checks official-named files against the official SHA-256 (tests writing tiny
    hand-made files turn it off).
    """
    d = find_mnist_dir(split, data_dir, download, dataset)
    img_path, lab_path = (_locate(d, stem) for stem in SPLITS[split])
    images, labels = read_idx(img_path, verify, dataset), read_idx(lab_path, verify, dataset)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise MNISTError(f"{img_path}: expected uint8 images (n, 28, 28), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise MNISTError(f"{lab_path}: expected uint8 labels (n,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise MNISTError(f"{img_path} has {len(images)} images but {lab_path} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise MNISTError(f"{lab_path}: label {int(labels.max())} is not a class 0-9")
    return images, labels.astype(np.int64)


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 ``(n, 28, 28)`` -> float32 ``(n, 28, 28, 1)`` in [0, 1] (the networks' input).

    Images that already carry a channel axis, ``(n, 28, 28, C)``, keep it.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    x = images.astype(np.float32) / 255.0
    return x[..., None] if x.ndim == 3 else x
