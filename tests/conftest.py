"""Test-session settings.

JAX's persistent compilation cache, shared by the xdist workers: many tests build a fresh jitted step
(a closure over their config) for the same computation, which JAX's in-memory cache cannot reuse but the
persistent cache finds by the compiled program's hash (the default tier ran ~30% faster with it on a
cold cache).  Cached executables are the ones a fresh compile would produce, so results do not change.
"""

import os
import tempfile

import jax

jax.config.update("jax_compilation_cache_dir", os.environ.get("OTGEN_TEST_JAX_CACHE")
                  or os.path.join(tempfile.gettempdir(), "otgen-test-jax-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
