"""The IDX parser and MNIST look-up, on tiny hand-made files and (when present) the real ones."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from otgen.data import mnist
from otgen.data.mnist import MNISTError, load_mnist, parse_idx, read_idx

REAL_MNIST = Path(__file__).resolve().parents[1].parent / "shared/data/mnist"


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    """Write an IDX file by hand (independently of the parser): header + big-endian data."""
    dt = {0x08: ">u1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}[code]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    return head + arr.astype(dt).tobytes()


def write_split(d: Path, images, labels, split="train", gz=True):
    stems = mnist.SPLITS[split]
    for stem, arr in zip(stems, (images, labels)):
        blob = idx_bytes(arr)
        (d / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(blob) if gz else blob)


def tiny(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


@pytest.mark.parametrize("code,dtype", [(0x08, np.uint8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32)])
def test_parse_roundtrip_every_type(code, dtype):
    arr = (np.arange(2 * 3 * 4) * 3 - 5).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = parse_idx(idx_bytes(arr, code))
    assert out.shape == (2, 3, 4)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_parse_is_big_endian():
    # 0x0102 stored big-endian is 258, not 513.
    data = bytes([0, 0, 0x0B, 1]) + struct.pack(">I", 1) + b"\x01\x02"
    assert parse_idx(data)[0] == 258


@pytest.mark.parametrize("mutate,msg", [
    (lambda b: b[:2], "too short"),
    (lambda b: b"\x01" + b[1:], "magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "element type"),
    (lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
    (lambda b: b[:6], "header"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\x00", "trailing"),
])
def test_parse_rejects_corrupt(mutate, msg):
    good = idx_bytes(np.zeros((3, 4), np.uint8))
    with pytest.raises(MNISTError, match=msg):
        parse_idx(mutate(good))


def test_mnist_error_is_value_error():
    assert issubclass(MNISTError, ValueError)


def test_load_gz_and_raw_agree(tmp_path):
    images, labels = tiny()
    (tmp_path / "gz").mkdir()
    (tmp_path / "raw").mkdir()
    write_split(tmp_path / "gz", images, labels, gz=True)
    write_split(tmp_path / "raw", images, labels, gz=False)
    for sub in ("gz", "raw"):
        x, y = load_mnist("train", tmp_path / sub, download=False, verify=False)
        assert x.dtype == np.uint8 and x.shape == (5, 28, 28)
        np.testing.assert_array_equal(x, images)
        np.testing.assert_array_equal(y, labels)


def test_official_name_fails_checksum(tmp_path):
    images, labels = tiny()
    write_split(tmp_path, images, labels)
    with pytest.raises(MNISTError, match="SHA-256"):
        load_mnist("train", tmp_path, download=False)


def test_truncated_gzip_is_an_error(tmp_path):
    images, labels = tiny(50)
    write_split(tmp_path, images, labels)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(MNISTError, match="gzip|truncated"):
        read_idx(p, verify=False)


def test_count_mismatch_between_images_and_labels(tmp_path):
    images, labels = tiny(5)
    write_split(tmp_path, images, labels[:4])
    with pytest.raises(MNISTError, match="5 images but .* 4 labels"):
        load_mnist("train", tmp_path, download=False, verify=False)


def test_wrong_image_size_rejected(tmp_path):
    write_split(tmp_path, np.zeros((2, 27, 28), np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(MNISTError, match=r"\(n, 28, 28\)"):
        load_mnist("train", tmp_path, download=False, verify=False)


def test_lookup_order_and_missing_message(tmp_path, monkeypatch):
    a, b, cache = tmp_path / "a", tmp_path / "b", tmp_path / "xdg"
    for d in (a, b):
        d.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("OTGEN_DATA_DIR", str(b))
    write_split(b, *tiny(3, seed=1))
    # data_dir without the files -> falls through to $OTGEN_DATA_DIR
    assert mnist.find_mnist_dir("train", a, download=False) == b
    write_split(a, *tiny(4, seed=2))
    assert mnist.find_mnist_dir("train", a, download=False) == a
    x, _ = load_mnist("train", a, download=False, verify=False)
    assert len(x) == 4
    # Nothing anywhere and no network: the message names every place to put the files.
    monkeypatch.delenv("OTGEN_DATA_DIR")

    def offline(stem, target_dir, timeout=30.0, dataset="mnist"):
        raise OSError("network unreachable")

    monkeypatch.setattr(mnist, "_download", offline)
    with pytest.raises(FileNotFoundError) as e:
        load_mnist("test", tmp_path / "nowhere")
    text = str(e.value)
    assert str(tmp_path / "nowhere") in text and str(cache / "otgen" / "mnist") in text
    assert "t10k-images-idx3-ubyte.gz" in text and "network unreachable" in text


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation")


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="real MNIST not present next to the repo")
def test_real_mnist_checksums_and_shapes():
    x, y = load_mnist("test", REAL_MNIST, download=False)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and set(np.unique(y)) == set(range(10))
    # Known facts about the official test set: label counts and first label (a 7).
    assert y[0] == 7
    np.testing.assert_array_equal(np.bincount(y), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


REAL_FASHION = REAL_MNIST.parent / "fashion-mnist"


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="real Fashion-MNIST not present next to the repo")
def test_real_fashion_mnist_recompressed_copy_is_verified_on_its_decompressed_bytes():
    # The shared copy is Debian's recompressed one: its .gz bytes differ from upstream's.
    x, y = load_mnist("test", REAL_FASHION, download=False, dataset="fashion")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)  # the test set is balanced
    assert y[0] == 9  # an ankle boot opens the official test set


@pytest.mark.skipif(not (REAL_MNIST.is_dir() and REAL_FASHION.is_dir()), reason="real data not present")
def test_one_dataset_offered_as_the_other_is_refused_by_name(tmp_path):
    with pytest.raises(MNISTError, match="it is the MNIST file of that name"):
        load_mnist("test", REAL_MNIST, download=False, dataset="fashion")
    # a recompressed MNIST file (other gzip bytes, same content) is accepted as MNIST
    raw = gzip.decompress((REAL_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw, compresslevel=1))
    assert read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz")[0] == 7
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw[:-1] + b"\x03"))
    with pytest.raises(MNISTError, match="corrupt or truncated"):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(ValueError, match="IDX dataset"):
        load_mnist("test", REAL_MNIST, dataset="kmnist")
