"""Tests of linear_jax.model: scores, prediction, the bias trick."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linear_jax as lj


def _params(c=3, d=4, seed=0):
  p = lj.init_params(jax.random.PRNGKey(seed), d, c, scale=1.0, dtype=jnp.float64)
  return p._replace(b=jnp.arange(c, dtype=jnp.float64) - 1.0)


def test_init_params_shapes_and_dtype():
  p = lj.init_params(jax.random.PRNGKey(0), num_features=5, num_classes=3)
  assert p.W.shape == (3, 5) and p.b.shape == (3,)
  assert p.W.dtype == jnp.float32
  np.testing.assert_array_equal(p.b, 0.0)
  assert 0 < float(jnp.std(p.W)) < 1e-2  # small weights: scores start near 0


def test_scores_is_wx_plus_b_per_example():
  p = _params()
  x = np.random.default_rng(0).normal(size=(6, 4))
  s = lj.scores(p, x)
  assert s.shape == (6, 3)
  for i in range(6):  # the lecture's column form, one example at a time
    np.testing.assert_allclose(s[i], np.asarray(p.W) @ x[i] + np.asarray(p.b), rtol=1e-12)


def test_predict_argmax_and_threshold():
  p = lj.Params(W=jnp.array([[1.0, 0.0], [0.0, 1.0]]), b=jnp.zeros(2))
  np.testing.assert_array_equal(lj.predict(p, np.array([[2.0, 1.0], [0.0, 3.0]])), [0, 1])
  binary = lj.Params(W=jnp.array([[1.0, -1.0]]), b=jnp.array([0.0]))
  # score >= 0 -> 1, including exactly 0
  np.testing.assert_array_equal(lj.predict(binary, np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])), [1, 0, 1])


def test_predict_refuses_a_row_it_cannot_classify_and_names_it():
  p = lj.Params(W=jnp.array([[1.0, 0.0], [0.0, 1.0]]), b=jnp.zeros(2))
  x = np.array([[2.0, 1.0], [0.0, 3.0], [np.nan, 1.0]])  # argmax of a NaN row would be class 0
  with pytest.raises(ValueError, match='non-finite feature.*example 2, feature 0'):
    lj.predict(p, x)
  with pytest.raises(ValueError, match='x has 3 features but W expects 2'):
    lj.predict(p, np.ones((2, 3)))
  with pytest.raises(ValueError, match=r'b must be \[C\] = \[2\]'):
    lj.predict(p._replace(b=jnp.zeros(3)), x[:2])
  np.testing.assert_array_equal(jax.jit(lj.predict)(p, x[:2]), [0, 1])  # inside jit: shapes only


def test_nested_lists_are_the_arrays_they_spell():
  p = lj.Params(W=[[1.0, 0.0], [0.0, 1.0]], b=[0.0, 0.5])
  arrays = lj.Params(W=np.array(p.W), b=np.array(p.b))
  x, y = [[2.0, 1.0], [0.0, 3.0]], [0, 1]
  np.testing.assert_array_equal(lj.predict(p, x), lj.predict(arrays, np.array(x)))
  np.testing.assert_allclose(
    lj.objective(p, x, y, loss='svm'), lj.objective(arrays, np.array(x), np.array(y), loss='svm')
  )
  got, want = lj.analytic_grad(p, x, y), lj.analytic_grad(arrays, np.array(x), np.array(y))
  np.testing.assert_allclose(got.W, want.W)
  with pytest.raises(ValueError, match='x must be an array or a rectangular nested list'):
    lj.objective(p, [[2.0, 1.0], [0.0]], y)
  # Inside a transform JAX sees the list's numbers as tracers: still the array they spell.
  np.testing.assert_array_equal(jax.jit(lj.predict)(p, x), lj.predict(arrays, np.array(x)))
  np.testing.assert_allclose(jax.grad(lambda q: lj.objective(q, x, y))(p).W, want.W, rtol=1e-12)
  assert lj.check_gradients(p, x, y, loss='softmax', reg=0.1).passed


def test_softmax_probabilities():
  p = lj.softmax(jnp.array([[3.2, 5.1, -1.7]]))
  np.testing.assert_allclose(jnp.sum(p), 1.0, rtol=1e-12)
  assert abs(float(p[0, 0]) - 0.13) < 0.005  # the lecture's P(cat)


def test_bias_trick_round_trip_and_same_scores():
  p = _params()
  x = np.random.default_rng(1).normal(size=(5, 4))
  folded = lj.fold_bias(p)
  assert folded.W.shape == (3, 5) and folded.b is None
  np.testing.assert_allclose(lj.scores(folded, lj.add_bias_feature(x)), lj.scores(p, x), rtol=1e-12)
  back = lj.unfold_bias(folded)
  np.testing.assert_array_equal(back.W, p.W)
  np.testing.assert_array_equal(back.b, p.b)
  with pytest.raises(ValueError, match='already in bias-trick form'):
    lj.fold_bias(folded)


def test_scores_jit_and_vmap_agree():
  p = _params()
  x = np.random.default_rng(2).normal(size=(7, 4))
  per_example = jax.vmap(lambda xi: lj.scores(p, xi[None])[0])(x)
  np.testing.assert_allclose(jax.jit(lj.scores)(p, x), per_example, rtol=1e-12)


def test_scores_and_the_bias_trick_assert_their_shapes():
  p = _params(c=3, d=4)
  with pytest.raises(AssertionError):
    jax.jit(lj.scores)(p, jnp.zeros((2, 5)))  # D = 5 features for W of D = 4
  with pytest.raises(AssertionError):
    lj.scores(p._replace(b=jnp.zeros(2)), jnp.zeros((2, 4)))  # b of 2 biases for C = 3
  with pytest.raises(AssertionError):
    lj.fold_bias(p._replace(b=jnp.zeros(2)))
  with pytest.raises(AssertionError):
    lj.softmax(jnp.zeros(3))
