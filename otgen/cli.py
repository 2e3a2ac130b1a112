"""The ``otgen`` command line.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``; modules are imported only when their subcommand runs, so
``otgen --help`` stays fast.  ``toy`` and ``mnist`` are the package's own pipelines
(``otgen.pipelines``); ``compare``, ``ablation`` and ``reproduce`` are the research
harness in the repository's ``experiments/`` folder, found next to the package in a
clone (``pip install -e .``) and named as repository-only elsewhere.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from otgen import __version__

# name -> (module, one-line help)
COMMANDS = {
    "toy": ("otgen.pipelines.toy", "train AE-OT or a GAN baseline on a 2D toy distribution or a .npy file"),
    "mnist": ("otgen.pipelines.mnist", "train AE-OT (or a GAN baseline) on MNIST, stage by stage, resumable"),
    "compare": ("experiments.compare", "compare mode coverage of AE-OT and the GAN family; writes a report"),
    "ablation": ("experiments.ablation",
                 "every latent sampler (Gaussian, GMM, KDE, AE-OT's rules) on one AE-OT run's codes; one table"),
    "reproduce": ("experiments.reproduce",
                  "the GAN baselines at their authors' toy settings and budgets (resumable); writes a report"),
}
# Commands that may fit a large Monte-Carlo OT problem on every core: they run with one XLA CPU device
# per core (otgen.ot.sharding.one_device_per_core); `reproduce` pins its workers to one core each instead.
SHARDED_COMMANDS = ("mnist", "compare")

HARNESS = "experiments."
# A clone's root: the folder holding both the package and the harness (an editable install points here).
REPO_ROOT = Path(__file__).resolve().parents[1]


def load_command(name: str):
    """The module behind subcommand ``name``; a harness command is imported from the clone's
    ``experiments/``, with a clear error where the package was installed without its repository."""
    module = COMMANDS[name][0]
    if module.startswith(HARNESS):
        if not (REPO_ROOT / "experiments" / "__init__.py").is_file():
            raise SystemExit(f"otgen {name}: part of the research harness in the repository's experiments/ "
                             "folder, which this installation lacks; clone the repository and pip install -e . there")
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module(module)


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
            load_command(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in SHARDED_COMMANDS:
        from otgen.ot.sharding import one_device_per_core

        one_device_per_core()
    module = load_command(args.command)
    try:
        return int(module.main(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # bad input: a clear message, not a traceback
        print(f"otgen {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM where a command maps it (reproduce's workers)
        print(f"otgen {args.command}: interrupted{f' ({e})' if str(e) else ''}; the checkpoints written so far "
              "are kept: rerun the same command to resume", file=sys.stderr)
        return 130


def entry() -> None:
    """The console script.  After an interrupt every checkpoint is already on disk (atomically), and
    XLA's CPU client can hang in its thread pool's destructor when the interpreter tears down mid-step
    (seen after SIGTERM of a training job), so an interrupted run leaves without that teardown."""
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    entry()
