"""The peer benchmark's budget sizing (scripts/ot_peers.py) on a run of known cost: a + b * iterations."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import ot_peers


def test_a_fixed_cost_no_longer_starves_the_peer_of_its_budget():
    calls = []

    def run(n, fixed=2.0, per_iteration=0.01):
        calls.append(n)
        return f"result of {n}", fixed + per_iteration * n

    # the probe alone (20 iterations: 2.2 s, mostly fixed cost) would size the run at 90 iterations, 2.9 s of 10
    assert ot_peers.iterations_for_budget(lambda n: run(n)[1], 10.0, 20) == 90
    result, sec, n = ot_peers.run_for_budget(run, 10.0, 20, tries=6)
    assert 0.85 * 10.0 <= sec <= 10.0 and result == f"result of {n}"
    assert n == calls[-1] and n > 90
