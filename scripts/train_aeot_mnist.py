#!/usr/bin/env python
"""Train AE-OT on MNIST, stage by stage and resumable (same as ``otgen mnist``).

    python scripts/train_aeot_mnist.py --preset quick --data-dir DIR --out RUN_DIR
"""

import argparse
import sys

from otgen.pipelines import mnist


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mnist.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return mnist.main(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"train_aeot_mnist: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
