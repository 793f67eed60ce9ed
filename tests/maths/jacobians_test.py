"""The lecture's Jacobian conventions, with jax.jacrev / jax.jacfwd beside the hand-derived ones."""

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import jacobians


def test_every_convention_has_the_lecture_shape_and_the_derived_value():
  found = {
    j.name: j for j in jacobians.lecture_jacobians(jax.random.PRNGKey(3), num_features=5, num_classes=4)
  }
  expected = {
    'dv/ds': (4, 1),  # m × 1: a column
    'dL/ds': (1, 4),  # 1 × m: a row
    'ds/dx': (4, 5),  # row i is ∂s_i/∂x
    'ds/dvec(W)': (4, 20),
    'dL/dW': (4, 5),  # the shape of W
    'd vec(S)/d vec(X)': (2 * 4, 2 * 4),  # a batch of two 2×2 images, flattened
  }
  assert {n: j.autodiff.shape for n, j in found.items()} == expected
  for j in found.values():
    assert j.derived.shape == j.shape
    np.testing.assert_allclose(j.autodiff, j.derived, rtol=1e-5, atol=1e-6, err_msg=j.name)


def test_jacobian_row_i_is_the_gradient_of_output_i():
  w = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
  f = lambda v: jnp.tanh(w @ v)
  v = jnp.linspace(-1, 1, 5)
  jac = jax.jacrev(f)(v)
  for i in range(3):
    np.testing.assert_allclose(jac[i], jax.grad(lambda v_: f(v_)[i])(v), rtol=1e-6)
  np.testing.assert_allclose(jax.jacfwd(f)(v), jac, rtol=1e-6)
