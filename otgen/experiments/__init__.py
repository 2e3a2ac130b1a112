"""Experiments: one module per `otgen` subcommand (a config dataclass and a run function)."""
