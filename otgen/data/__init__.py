"""Data: every dataset behind one :func:`load`.

* 2-D toys (:mod:`otgen.data.toys`): ``load("ring8", "train", n=2000, seed=0)`` draws
  ``n`` points; the splits are independent draws from keys derived from ``seed``:
  ``"train"`` (what a run trains on), ``"held_out"`` (what a run is scored against)
  and ``"control"`` (the *real* control row of a report).
* Images, uint8: ``"mnist"`` and ``"fashion"`` (Fashion-MNIST) (:mod:`otgen.data.mnist`,
  (n, 28, 28), labels 0..9) and ``"stacked"`` (:mod:`otgen.data.stacked`, (n, 28, 28, 3), modes 0..999), splits
  ``"train"`` and ``"test"``; ``data_dir`` as in :func:`otgen.data.mnist.load_mnist`.

A user's own ``.npy`` array is read by :func:`otgen.data.toys.load_npy`.
"""

from __future__ import annotations

__all__ = ["IMAGE_DATASETS", "TOY_SPLITS", "names", "load", "draw_toy"]

IMAGE_DATASETS = ("mnist", "fashion", "stacked")
TOY_SPLITS = ("train", "held_out", "control")


def names() -> tuple[str, ...]:
    """Every dataset :func:`load` knows."""
    from otgen.data import toys

    return toys.names() + IMAGE_DATASETS


def _toy_key(split: str, seed: int):
    import jax

    key = jax.random.key(seed)
    if split == "train":  # the first of a run's three keys (data, fit, sample): unchanged since v0.1
        return jax.random.split(key, 3)[0]
    return jax.random.fold_in(key, TOY_SPLITS.index(split))  # streams no training step uses


def draw_toy(toy, split: str, n: int, seed: int):
    """``n`` points of the ``split`` of a toy object (``.sample(key, n)``): what :func:`load` draws."""
    if split not in TOY_SPLITS:
        raise ValueError(f"toy split must be one of {', '.join(TOY_SPLITS)}, got {split!r}")
    if n is None or n < 1:
        raise ValueError(f"a toy draw needs n >= 1 points, got {n!r}")
    return toy.sample(_toy_key(split, seed), n)


def load(name: str, split: str = "train", data_dir=None, *, n: int | None = None, seed: int = 0,
         with_labels: bool = False):
    """The ``split`` of dataset ``name`` (see the module docstring).

    Toys: float32 (n, 2), ``n`` required.  Images: uint8 arrays, the first ``n`` of the split
    if ``n`` is given; ``with_labels=True`` returns ``(images, labels)``.
    """
    from otgen.data import toys

    if name in toys.names():
        return draw_toy(toys.get(name), split, n, seed)
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; datasets are {', '.join(names())}")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if name == "stacked":
        from otgen.data.stacked import load_stacked

        images, labels = load_stacked(split, data_dir)
    else:
        from otgen.data.mnist import load_mnist

        images, labels = load_mnist(split, data_dir, dataset=name)
    if n is not None:
        images, labels = images[:n], labels[:n]
    return (images, labels) if with_labels else images

