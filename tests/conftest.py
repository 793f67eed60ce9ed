"""Test settings: float64 available everywhere (training code picks float32 itself), float32 matmuls
in full float32 on every backend, and the experiments' compilation cache kept in a temporary directory,
never the user's.

On GPUs JAX's default float32 matmul is TF32 (about 1e-3 relative; see docs/gpus.md),
so tests that compare two float32 computations (streamed against in-memory, 8 devices against one, a
sweep's model against the same model alone) would measure TF32 rounding instead of the property they
test. The environment variable reaches the experiments the tests run in subprocesses too.
"""

import os

os.environ.setdefault('JAX_DEFAULT_MATMUL_PRECISION', 'highest')

import jax  # noqa: E402  (after the precision is set for this process and its children)
import pytest  # noqa: E402

jax.config.update('jax_enable_x64', True)
jax.config.update('jax_default_matmul_precision', os.environ['JAX_DEFAULT_MATMUL_PRECISION'])


@pytest.fixture(scope='session', autouse=True)
def _compilation_cache_in_tmp(tmp_path_factory):
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('XDG_CACHE_HOME', str(tmp_path_factory.mktemp('xdg_cache')))
    yield
