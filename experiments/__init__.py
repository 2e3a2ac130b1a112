"""otgen's research harness: the comparisons, the published-budget reproductions, the latent-sampler
ablation and the report writers behind ``experiments/reports/`` (a config dataclass and a run function
per command).  It lives in the repository, not in the installed package: ``otgen compare``, ``otgen
ablation`` and ``otgen reproduce`` import it from a clone (``pip install -e .``)."""
