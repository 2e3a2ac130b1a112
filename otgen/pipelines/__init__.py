"""The staged runs behind ``otgen toy`` and ``otgen mnist`` (a config dataclass and a run function each);
the research harness that compares many of them lives in the repository's ``experiments/``."""
