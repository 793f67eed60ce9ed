"""Gradient descent made visible: loss surfaces of two weights and the paths taken on them."""

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import grad_sources
from linear_jax.maths import losses
from linear_jax.maths import model


def two_weight_problem(num_examples=200, seed=0):
  """Overlapping 2-D binary data for a model `s = w₁x₁ + w₂x₂` (no bias): two weights."""
  from linear_jax.data import datasets as data  # pylint: disable=import-outside-toplevel

  raw = data.binary2d(num_examples, separation=2.0, seed=seed)
  x = (raw.x - raw.x.mean(0)) / raw.x.std(0)
  return jnp.asarray(x), jnp.asarray(raw.y)


def surface(loss, x, y, w1, w2, reg=0.0, loss_hparams=None):
  """The objective on the grid `w1 × w2`: `[len(w2), len(w1)]`."""

  def at(w):
    # A zero bias column keeps both weights in W and out of the bias-trick form.
    params = model.Params(W=w[None, :], b=jnp.zeros((1,), w.dtype))
    return losses.unchecked_objective(params, x, y, loss, reg, 'l2', loss_hparams)

  g1, g2 = jnp.meshgrid(jnp.asarray(w1, x.dtype), jnp.asarray(w2, x.dtype))
  grid = jnp.stack([g1.ravel(), g2.ravel()], axis=1)
  return np.asarray(jax.jit(jax.vmap(at))(grid)).reshape(g1.shape)


def descent_path(loss, x, y, w0, learning_rate, steps, batch_size=None, reg=0.0, loss_hparams=None, seed=0):
  """Weights after each of `steps` gradient steps (hand-derived gradient): `[steps + 1, 2]`.

  Full batch when `batch_size` is `None`; otherwise each step uses a random
  mini-batch of that size (a noisier path).
  """
  n = x.shape[0]

  def grad_at(w, idx):
    params = model.Params(W=w[None, :], b=jnp.zeros((1,), w.dtype))
    xb, yb = (x, y) if idx is None else (x[idx], y[idx])
    _, g = grad_sources.value_and_grad(
      'analytic', params, xb, yb, loss=loss, reg=reg, loss_hparams=loss_hparams
    )
    return g.W[0]

  @jax.jit
  def run(w0, key):
    def step(w, k):
      idx = None if batch_size is None else jax.random.choice(k, n, (batch_size,), replace=False)
      w = w - learning_rate * grad_at(w, idx)
      return w, w

    _, path = jax.lax.scan(step, w0, jax.random.split(key, steps))
    return jnp.concatenate([w0[None], path])

  return np.asarray(run(jnp.asarray(w0, x.dtype), jax.random.PRNGKey(seed)))
