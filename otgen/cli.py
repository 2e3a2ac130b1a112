"""The ``otgen`` command line.

Each subcommand lives in its own experiment module exposing
``add_arguments(parser)`` and ``main(args) -> int``; modules are imported only
when their subcommand runs, so ``otgen --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from otgen import __version__

# name -> (module, one-line help)
COMMANDS = {
    "toy": ("otgen.experiments.toy", "train AE-OT or a GAN baseline on a 2D toy distribution or a .npy file"),
    "mnist": ("otgen.experiments.mnist", "train AE-OT (or a GAN baseline) on MNIST, stage by stage, resumable"),
    "compare": ("otgen.experiments.compare", "compare mode coverage of AE-OT and the GAN family; writes a report"),
    "ablation": ("otgen.experiments.ablation",
                 "every latent sampler (Gaussian, GMM, KDE, AE-OT's rules) on one AE-OT run's codes; one table"),
    "reproduce": ("otgen.experiments.reproduce",
                  "the GAN baselines at their authors' toy settings and budgets (resumable); writes a report"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otgen", description="Optimal-transport generative modelling (semi-discrete OT, AE-OT, GAN baselines).")
    parser.add_argument("--version", action="version", version=f"otgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen subcommand's module is imported (its arguments are needed for parsing).
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.main(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # bad input: a clear message, not a traceback
        print(f"otgen {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM where a command maps it (reproduce's workers)
        print(f"otgen {args.command}: interrupted{f' ({e})' if str(e) else ''}; the checkpoints written so far "
              "are kept: rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
