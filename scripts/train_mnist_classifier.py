"""Train (or load) the project's MNIST (or Fashion-MNIST) classifier and report its test accuracy.

    python scripts/train_mnist_classifier.py --data-dir /path/to/mnist [--epochs 3] [--retrain]
    python scripts/train_mnist_classifier.py --dataset fashion --data-dir /path/to/fashion-mnist

The weights are cached with otgen.checkpoint under $OTGEN_CACHE_DIR/classifier
(default ~/.cache/otgen/classifier); otgen.eval.mnist.evaluate_digits uses the
same cache and the same training code when the cache is empty.
"""

from __future__ import annotations

import argparse
import sys

from otgen.eval.classifier import ClassifierConfig, checkpoint_path, load_or_train


def main(argv: list[str] | None = None) -> int:
    defaults = ClassifierConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist", choices=("mnist", "fashion"))
    p.add_argument("--data-dir", default=None, help="directory holding the dataset's IDX files")
    p.add_argument("--cache-dir", default=None, help="where the weights are cached (default: see above)")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    p.add_argument("--max-shift", type=int, default=defaults.max_shift, help="augmentation: random shifts (px)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--retrain", action="store_true", help="train even if a cached classifier exists")
    args = p.parse_args(argv)
    config = ClassifierConfig(args.epochs, args.batch_size, args.learning_rate, args.max_shift, args.seed)
    try:
        _, meta = load_or_train(args.data_dir, args.cache_dir, config, retrain=args.retrain, dataset=args.dataset)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.dataset} classifier {meta['arch']} at {checkpoint_path(args.cache_dir, args.dataset)}: "
          f"test accuracy {meta['test_accuracy']:.4f} ({meta['n_test']} images), "
          f"trained {meta['config']['epochs']} epochs in {meta['train_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
