"""Test settings: float64 available everywhere (training code picks float32 itself)."""

import jax

jax.config.update('jax_enable_x64', True)
