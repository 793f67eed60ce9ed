"""The Jacobian conventions of the lecture's last section, computed and derived.

For a scalar `s`, vectors `v ∈ R^m`, `v¹ ∈ R^m`, `v² ∈ R^n` and a matrix `W`:
`∂v/∂s` is `m × 1` (a column), `∂s/∂v` is `1 × m` (a row), `∂v¹/∂v²` is the
`m × n` Jacobian whose row `i` is `∂v¹_i/∂v²`, `∂L/∂W` of a scalar loss has
the shape of `W`, and a batch's Jacobian is taken on the flattened input.
JAX's `jacfwd` / `jacrev` give `output shape + input shape`; writing a scalar
as a 1-vector gives exactly the lecture's shapes. Each entry below pairs
autodiff with the formula derived by hand for a small linear classifier.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import classification
from linear_jax.maths import grads
from linear_jax.maths import model


class Jacobian(NamedTuple):
  """One convention: what it is, the lecture's shape, autodiff's value and the hand-derived one."""

  name: str
  shape: tuple
  autodiff: np.ndarray
  derived: np.ndarray
  formula: str


def lecture_jacobians(key=None, num_features=4, num_classes=3, batch=2, image=(2, 2)):
  """Every convention of the lecture's last section on a small linear classifier `s = Wx + b`.

  Returns:
    A list of `Jacobian`s; for each, `autodiff` and `derived` have `shape`.
  """
  key = jax.random.PRNGKey(0) if key is None else key
  kw, kx, kb, ka = jax.random.split(key, 4)
  c, d = num_classes, num_features
  params = model.init_params(kw, d, c, scale=1.0)
  params = params._replace(b=jax.random.normal(kb, (c,)))
  x = jax.random.normal(kx, (d,))
  y = jnp.asarray([1])
  a = jax.random.normal(ka, (c,))
  s = params.W @ x + params.b
  out = []

  # ∂v/∂s, m × 1: v(s) = s · a, a scalar s written as a 1-vector.
  v_of_s = lambda s1: s1[0] * a
  out.append(Jacobian('dv/ds', (c, 1), jax.jacfwd(v_of_s)(jnp.ones(1)), a[:, None], 'a (column)'))

  # ∂s/∂v, 1 × m: the scalar L(v) = logsumexp(v) − v_y, written as a 1-vector.
  l_of_v = lambda v: classification.softmax_cross_entropy(v[None], y)
  derived = classification.softmax_cross_entropy_score_grad(s[None], y)
  out.append(Jacobian('dL/ds', (1, c), jax.jacrev(l_of_v)(s), derived, 'softmax(s) − onehot(y) (row)'))

  # ∂v¹/∂v², m × n: the scores' Jacobian in the input is W; row i is ∂s_i/∂x.
  out.append(Jacobian('ds/dx', (c, d), jax.jacfwd(lambda x_: params.W @ x_ + params.b)(x), params.W, 'W'))

  # ∂s/∂W over the flattened W: [C, C·D], the Kronecker product I_C ⊗ xᵀ. Reverse mode: C products
  # of [C·D] each, where forward mode pushed C·D tangents of [C·D] (a peak of 11.4 GB at a CIFAR-sized W).
  s_of_w = lambda w_flat: w_flat.reshape(c, d) @ x + params.b
  derived = jnp.kron(jnp.eye(c), x[None, :])
  out.append(Jacobian('ds/dvec(W)', (c, c * d), jax.jacrev(s_of_w)(params.W.ravel()), derived, 'I_C ⊗ xᵀ'))

  # ∂L/∂W of a scalar loss has the shape of W: (softmax(s) − onehot(y)) xᵀ.
  loss_of_w = lambda w: classification.softmax_cross_entropy((w @ x + params.b)[None], y)[0]
  derived = grads.linear_layer_grad(
    params, x[None], classification.softmax_cross_entropy_score_grad(s[None], y)
  ).W
  out.append(Jacobian('dL/dW', (c, d), jax.grad(loss_of_w)(params.W), derived, '(softmax(s) − onehot(y)) xᵀ'))

  # A batch of images [B, H, W]: flatten to [B·H·W]; the scores [B·C] then have the block-diagonal
  # Jacobian I_B ⊗ W_img (each example's scores see only its own pixels), W_img the [C, H·W] weights of
  # a classifier of those images: not the classifier of `num_features` above.
  pixels = int(np.prod(image))
  wi = jax.random.normal(kw, (c, pixels))
  images = jax.random.normal(kx, (batch, *image))
  scores_of_flat = lambda flat: (flat.reshape(batch, pixels) @ wi.T).ravel()
  derived = jnp.kron(jnp.eye(batch), wi)
  out.append(
    Jacobian(
      'd vec(S)/d vec(X)',
      (batch * c, batch * pixels),
      jax.jacfwd(scores_of_flat)(images.ravel()),
      derived,
      f'I_B ⊗ W_img (W_img [{c}, {pixels}] of {image[0]}×{image[1]} images)',
    )
  )
  return [j._replace(autodiff=np.asarray(j.autodiff), derived=np.asarray(j.derived)) for j in out]
