"""Multi-process (multi-host style) run on loopback: 2 JAX processes, 1 CPU device each, gloo collectives.

Each process calls ``jax.distributed.initialize`` and runs the same program on a
2 x 1 (samples x targets) mesh spanning both processes.  Seeds are fixed.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import pytest

import jax
import numpy as np

from otgen.ot import SemiDiscreteOT, UniformBox

_WORKER = textwrap.dedent("""
    import json, sys
    import jax
    pid, port = int(sys.argv[1]), sys.argv[2]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    import numpy as np
    from otgen.ot import SemiDiscreteOT, UniformBox, sharding
    assert jax.process_count() == 2 and jax.device_count() == 2
    y = jax.random.uniform(jax.random.PRNGKey(3), (300, 2))
    p = SemiDiscreteOT(UniformBox(2), y, mesh=sharding.make_mesh(2, 1))
    e = p.estimate(jax.random.PRNGKey(4), p.initial_h(), 1 << 16, sampling="iid")
    b = p.fit(jax.random.PRNGKey(6), tol=0.05, progress=False)
    print("RESULT " + json.dumps({"masses": np.asarray(e.masses).tolist(), "h": np.asarray(b.h).tolist(),
                                  "converged": b.diagnostics.converged}))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.heavy
def test_two_processes_match_single_device():
    port = str(_free_port())
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(i), port], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:]))

    y = jax.random.uniform(jax.random.PRNGKey(3), (300, 2))
    single = SemiDiscreteOT(UniformBox(2), y)
    ref = np.asarray(single.estimate(jax.random.PRNGKey(4), single.initial_h(), 1 << 16, sampling="iid").masses)
    for o in outs:
        # Same key -> the same global samples, split across processes: identical histogram.
        np.testing.assert_array_equal(np.asarray(o["masses"], np.float32), ref)
        assert o["converged"]
    np.testing.assert_array_equal(outs[0]["h"], outs[1]["h"])  # both processes hold the same result
    ref_fit = single.fit(jax.random.PRNGKey(6), tol=0.05, progress=False)
    h = np.asarray(outs[0]["h"])
    assert np.abs(h - np.asarray(ref_fit.h)).max() <= 0.02 * np.std(h)
