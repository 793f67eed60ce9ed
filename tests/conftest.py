"""Test settings: float64 available everywhere (training code picks float32 itself), and the
experiments' compilation cache kept in a temporary directory, never the user's."""

import jax
import pytest

jax.config.update('jax_enable_x64', True)


@pytest.fixture(scope='session', autouse=True)
def _compilation_cache_in_tmp(tmp_path_factory):
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('XDG_CACHE_HOME', str(tmp_path_factory.mktemp('xdg_cache')))
    yield
