"""Tests of linear_jax.losses against the lecture's numbers, optax and NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import linear_jax as lj
from linear_jax.maths import binary
from linear_jax.maths import classification
from linear_jax.maths import losses
from linear_jax.maths import regression

# The lecture's example: columns are the cat, car and frog images; rows are the
# scores of the classes cat, car, frog. Each image's label is its own class.
LECTURE_SCORES = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
LECTURE_LABELS = np.array([0, 1, 2])


def test_svm_matches_lecture_example():
  per_example = classification.multiclass_svm(jnp.asarray(LECTURE_SCORES), LECTURE_LABELS)
  np.testing.assert_allclose(per_example, [2.9, 0.0, 12.9], atol=1e-12)
  assert abs(float(jnp.mean(per_example)) - 5.27) < 0.005


def test_svm_matches_numpy_loop():
  rng = np.random.default_rng(0)
  s, y = rng.normal(size=(9, 5)), rng.integers(0, 5, 9)
  expected = [sum(max(0.0, s[i, j] - s[i, y[i]] + 0.7) for j in range(5) if j != y[i]) for i in range(9)]
  np.testing.assert_allclose(classification.multiclass_svm(jnp.asarray(s), y, 0.7), expected, rtol=1e-12)


def test_svm_at_initialization_is_c_minus_1_and_softmax_is_log_c():
  c = 10
  s = jnp.zeros((4, c), jnp.float64)
  y = np.arange(4)
  np.testing.assert_allclose(classification.multiclass_svm(s, y), c - 1)
  np.testing.assert_allclose(classification.softmax_cross_entropy(s, y), np.log(c), rtol=1e-12)


def test_svm_sum_over_all_classes_adds_margin_and_mean_scales():
  s, y, margin = jnp.asarray(LECTURE_SCORES), LECTURE_LABELS, 1.0
  with_all = jnp.sum(jax.nn.relu(s - s[jnp.arange(3), y][:, None] + margin), axis=1)
  np.testing.assert_allclose(with_all, classification.multiclass_svm(s, y, margin) + margin, rtol=1e-12)
  margins = np.asarray(classification.svm_margins(s, y, margin))
  mean_form = np.maximum(margins, 0).sum(1) / (3 - 1)  # mean over j != y_i
  np.testing.assert_allclose(mean_form, classification.multiclass_svm(s, y, margin) / 2, rtol=1e-12)


def test_svm_zero_loss_for_w_is_zero_for_2w():
  x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
  y = np.array([0, 1, 2])
  w = np.array([[5.0, -1.0], [-1.0, 5.0], [-4.0, -4.0]])
  for scale in (1.0, 2.0):
    p = lj.Params(W=jnp.asarray(scale * w), b=jnp.zeros(3))
    assert float(lj.objective(p, x, y, loss='svm')) == 0.0


def test_softmax_matches_lecture_example():
  loss = classification.softmax_cross_entropy(jnp.asarray(LECTURE_SCORES[:1]), LECTURE_LABELS[:1])
  assert abs(float(loss[0]) - 2.04) < 0.01


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.float64])
def test_softmax_matches_optax(dtype):
  rng = np.random.default_rng(1)
  s, y = jnp.asarray(rng.normal(size=(8, 6)) * 5, dtype), rng.integers(0, 6, 8)
  np.testing.assert_allclose(
    classification.softmax_cross_entropy(s, y),
    optax.softmax_cross_entropy_with_integer_labels(s, y),
    rtol=1e-5 if dtype == jnp.float32 else 1e-12,
  )


def test_logistic_and_hinge_match_optax():
  rng = np.random.default_rng(2)
  s, y = jnp.asarray(rng.normal(size=(10, 1)) * 4), rng.integers(0, 2, 10)
  np.testing.assert_allclose(
    binary.logistic(s, y), optax.sigmoid_binary_cross_entropy(s[:, 0], y), rtol=1e-12
  )
  np.testing.assert_allclose(binary.binary_hinge(s, y), optax.hinge_loss(s[:, 0], 2 * y - 1), rtol=1e-12)


def test_regression_losses_match_numpy():
  rng = np.random.default_rng(3)
  s, t = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
  np.testing.assert_allclose(regression.l2_regression(jnp.asarray(s), t), ((t - s) ** 2).sum(1), rtol=1e-12)
  np.testing.assert_allclose(regression.l1_regression(jnp.asarray(s), t), np.abs(t - s).sum(1), rtol=1e-12)
  # one output: [N] targets against [N, 1] scores
  np.testing.assert_allclose(
    regression.l2_regression(jnp.asarray(s[:, :1]), t[:, 0]), (t[:, 0] - s[:, 0]) ** 2, rtol=1e-12
  )


def test_sigmoid_l2_is_squared_error_of_sigmoid():
  s, y = np.array([[0.0], [2.0], [-3.0]]), np.array([1, 0, 0])
  sig = 1 / (1 + np.exp(-s[:, 0]))
  np.testing.assert_allclose(binary.sigmoid_l2(jnp.asarray(s), y), (y - sig) ** 2, rtol=1e-12)


def test_objective_is_mean_plus_penalty_without_bias():
  rng = np.random.default_rng(4)
  p = lj.Params(W=jnp.asarray(rng.normal(size=(3, 2))), b=jnp.asarray([10.0, -10.0, 5.0]))
  x, y = rng.normal(size=(5, 2)), rng.integers(0, 3, 5)
  data = float(jnp.mean(classification.multiclass_svm(lj.scores(p, x), y)))
  w = np.asarray(p.W)
  np.testing.assert_allclose(
    lj.objective(p, x, y, loss='svm', reg=0.3, penalty='l2'), data + 0.3 * (w**2).sum(), rtol=1e-12
  )
  np.testing.assert_allclose(
    lj.objective(p, x, y, loss='svm', reg=0.3, penalty='l1'), data + 0.3 * np.abs(w).sum(), rtol=1e-12
  )
  # bias-trick form: same objective, the bias column is not penalized
  folded = lj.fold_bias(p)
  np.testing.assert_allclose(
    lj.objective(folded, lj.add_bias_feature(x), y, loss='svm', reg=0.3, penalty='l1'),
    lj.objective(p, x, y, loss='svm', reg=0.3, penalty='l1'),
    rtol=1e-12,
  )


def test_mask_averages_only_marked_rows():
  rng = np.random.default_rng(5)
  p = lj.Params(W=jnp.asarray(rng.normal(size=(3, 2))), b=jnp.zeros(3))
  x, y = rng.normal(size=(6, 2)), rng.integers(0, 3, 6)
  mask = np.array([1, 1, 1, 1, 0, 0])
  np.testing.assert_allclose(lj.objective(p, x, y, mask=mask), lj.objective(p, x[:4], y[:4]), rtol=1e-12)


@pytest.mark.parametrize('loss', sorted(losses.LOSSES))
def test_finite_for_extreme_scores_float32(loss):
  spec = losses.LOSSES[loss]
  c = 1 if spec.targets == 'binary' else 4
  s = jnp.asarray(np.tile([1e4, -1e4, 1e4, -1e4][:c], (4, 1)) * np.array([[1], [-1], [1], [-1]]), jnp.float32)
  targets = {'class': np.array([0, 1, 2, 3]), 'binary': np.array([0, 1, 1, 0])}.get(
    spec.targets, np.zeros((4, c), np.float32)
  )
  value = spec.value(s, targets, **spec.hparams)
  assert value.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(value)))
  grad = jax.grad(lambda s: jnp.sum(spec.value(s, targets, **spec.hparams)))(s)
  assert bool(jnp.all(jnp.isfinite(grad)))
  if spec.score_grad is not None:
    assert bool(jnp.all(jnp.isfinite(spec.score_grad(s, targets, **spec.hparams))))


def test_softmax_invariant_to_shifting_scores():
  rng = np.random.default_rng(6)
  s, y = rng.normal(size=(5, 4)), rng.integers(0, 4, 5)
  base = classification.softmax_cross_entropy(jnp.asarray(s), y)
  np.testing.assert_allclose(classification.softmax_cross_entropy(jnp.asarray(s + 1e6), y), base, atol=1e-9)
  np.testing.assert_allclose(
    classification.softmax_cross_entropy(jnp.asarray(s + 1e3, jnp.float32), y), base, atol=1e-3
  )


def _shapes_of(kind, n=5, c=3):
  """Scores and targets of the right shapes for a target kind."""
  c = 1 if kind == 'binary' else c
  targets = np.zeros((n, c)) if kind == 'real' else np.zeros(n, np.int32)
  return jnp.zeros((n, c)), jnp.asarray(targets)


@pytest.mark.parametrize('name', sorted(losses.LOSSES))
def test_every_loss_and_score_grad_asserts_the_shapes_of_scores_and_targets(name):
  spec = losses.get_loss(name)
  scores, targets = _shapes_of(spec.targets)
  for fn in (spec.value, spec.score_grad):
    out = jax.jit(fn)(scores, targets)  # the contract holds at trace time, under jit
    assert out.shape[0] == scores.shape[0]
    with pytest.raises(AssertionError):
      jax.jit(fn)(scores, targets[:-1])  # one target short
    with pytest.raises(AssertionError):
      fn(scores[0], targets)  # [C] scores, not [N, C]
    with pytest.raises(AssertionError):
      fn(jnp.zeros(scores.shape, jnp.int32), targets)  # integer scores
