"""check_loss_and_grad: the course's NumPy (loss, dW) functions, checked as they are written."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import linear_jax as lj
from linear_jax.maths import numpy_check


def svm_loss_naive(W, X, y, reg, delta=1.0):
  """The course's multiclass SVM, W [D, C], written with loops."""
  dW = np.zeros(W.shape)
  loss = 0.0
  for i in range(X.shape[0]):
    scores = X[i].dot(W)
    for j in range(W.shape[1]):
      if j == y[i]:
        continue
      margin = scores[j] - scores[y[i]] + delta
      if margin > 0:
        loss += margin
        dW[:, j] += X[i]
        dW[:, y[i]] -= X[i]
  loss /= X.shape[0]
  dW /= X.shape[0]
  return loss + reg * np.sum(W * W), dW + 2 * reg * W


def softmax_loss_vectorized(W, X, y, reg, reg_factor=2.0, data_factor=1.0):
  scores = X @ W
  scores -= scores.max(1, keepdims=True)
  p = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
  n = X.shape[0]
  loss = -np.log(p[np.arange(n), y]).mean() + reg * np.sum(W * W)
  p[np.arange(n), y] -= 1
  return loss, data_factor * X.T @ p / n + reg_factor * reg * W


def _problem(seed=0, n=30, d=6, c=4):
  rng = np.random.default_rng(seed)
  X = np.hstack([rng.normal(size=(n, d - 1)), np.ones((n, 1))])  # the bias folded in
  return 0.01 * rng.normal(size=(d, c)), X, rng.integers(0, c, n)


def test_course_svm_and_softmax_pass():
  W, X, y = _problem()
  report = lj.check_loss_and_grad(svm_loss_naive, W, X, y, 0.1, reference='svm')
  assert report.passed, report.summary()
  assert report.layout == 'DC'
  assert lj.check_loss_and_grad(softmax_loss_vectorized, W, X, y, 0.1, reference='softmax').passed


def test_c_by_d_layout_is_taken_too():
  W, X, y = _problem(1)
  fn = lambda w, x, y_, r: tuple(
    np.asarray(a).T if i else a for i, a in enumerate(svm_loss_naive(w.T, x, y_, r))
  )
  report = lj.check_loss_and_grad(fn, W.T, X, y, 0.05)
  assert report.passed and report.layout == 'CD'


def test_wrong_regularization_term_is_named():
  W, X, y = _problem(2)
  fn = lambda *a: softmax_loss_vectorized(*a, reg_factor=1.0)  # d(reg·ΣW²)/dW written reg·W
  report = lj.check_loss_and_grad(fn, W, X, y, 0.5, reference='softmax')
  assert not report.passed
  assert report.disagreements() == ['dW regularization term vs linear_jax', 'dW vs numerical (of fn)']
  assert 'disagrees: dW regularization term' in report.summary()


def test_wrong_data_term_is_named():
  W, X, y = _problem(3)
  fn = lambda *a: softmax_loss_vectorized(*a, data_factor=0.5)
  report = lj.check_loss_and_grad(fn, W, X, y, 0.5, reference='softmax')
  assert report.disagreements() == ['dW data term vs linear_jax', 'dW vs numerical (of fn)']


def test_wrong_loss_value_is_named():
  W, X, y = _problem(4)
  fn = lambda *a: (svm_loss_naive(*a)[0] * 2, svm_loss_naive(*a)[1])
  report = lj.check_loss_and_grad(fn, W, X, y, 0.1, reference='svm')
  assert report.disagreements()[0] == 'the loss value'


def test_square_weights_need_a_layout():
  rng = np.random.default_rng(5)
  W, X, y = rng.normal(size=(4, 4)), rng.normal(size=(8, 4)), rng.integers(0, 4, 8)
  with pytest.raises(ValueError, match="say layout='DC' or 'CD'"):
    lj.check_loss_and_grad(svm_loss_naive, W, X, y, 0.1)
  assert lj.check_loss_and_grad(svm_loss_naive, W, X, y, 0.1, layout='DC').passed
  with pytest.raises(ValueError, match='must return \\(loss, dW\\)'):
    lj.check_loss_and_grad(lambda *a: 1.0, W, X, y, 0.1, layout='DC')


@pytest.mark.parametrize(
  ('kwargs', 'message'),
  [
    (
      {'h': 0.0},
      r'h must be a finite number > 0 \(or None, to scale it by X\), got 0.0',
    ),  # ZeroDivisionError
    ({'reg': -0.5}, r'reg must be a finite number >= 0, got -0.5'),  # accepted
    ({'reg': float('nan')}, r'reg must be a finite number >= 0, got nan'),  # a FAIL verdict
    ({'seed': -1}, r'seed must be an integer in \[0, 2\*\*32\), got -1'),  # NumPy's words
    ({'num_coords': -1}, r'num_coords must be an integer in \[0, 10,000\]'),  # negative dimensions
    ({'num_directions': 10**7}, r'num_directions must be an integer in \[0, 10,000\]'),  # about an hour
    ({'num_coords': 0, 'num_directions': 0}, r'both 0: the check would compare nothing'),  # a PASS
  ],
)
def test_bad_arguments_are_refused_by_name_before_fn_is_called(kwargs, message):
  W, X, y = _problem(4)
  called = []
  fn = lambda *a: called.append(1) or svm_loss_naive(*a)
  args = {'reg': 0.1, **kwargs}
  reg = args.pop('reg')
  with pytest.raises(ValueError, match=message):
    lj.check_loss_and_grad(fn, W, X, y, reg, reference='svm', **args)
  assert not called


# The assignment's scale: N = 500 images of 3,072 mean-subtracted pixels (about ±60) and the bias column.
def svm_loss_vectorized(W, X, y, reg, on_hinge=False):
  """The course's vectorized multiclass SVM, as a student writes it (`on_hinge`: with `margin >= 0`
  taken as active, another valid subgradient where a margin is exactly 0)."""
  num_train = X.shape[0]
  scores = X.dot(W)
  correct = scores[np.arange(num_train), y][:, None]
  margins = np.maximum(0, scores - correct + 1)
  margins[np.arange(num_train), y] = 0
  loss = np.sum(margins) / num_train + reg * np.sum(W * W)
  mask = (scores - correct + 1 >= 0 if on_hinge else margins > 0).astype(float)
  mask[np.arange(num_train), y] = 0
  mask[np.arange(num_train), y] = -mask.sum(axis=1)
  return loss, X.T.dot(mask) / num_train + 2 * reg * W


def softmax_loss_course(W, X, y, reg, reg_factor=2.0, n_divides_dw=True, half_penalty=False):
  """The course's vectorized softmax; the keywords plant a mistake or a convention."""
  num_train = X.shape[0]
  scores = X.dot(W)
  scores -= scores.max(axis=1, keepdims=True)
  probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
  loss = -np.log(probs[np.arange(num_train), y]).sum() / num_train
  loss += (0.5 if half_penalty else 1.0) * reg * np.sum(W * W)
  probs[np.arange(num_train), y] -= 1
  dW = X.T.dot(probs) / (num_train if n_divides_dw else 1)
  return loss, dW + reg_factor * reg * W


def _pixels(seed):
  rng = np.random.default_rng(seed)
  X = rng.uniform(0, 255, size=(500, 3072))
  X = np.hstack([X - X.mean(0), np.ones((500, 1))])
  return 1e-4 * rng.normal(size=(3073, 10)), X, rng.integers(0, 10, 500)


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('reg', [5e-6, 5e1])
def test_correct_course_functions_pass_at_assignment_scale(seed, reg):
  W, X, y = _pixels(seed)
  for fn, name in ((svm_loss_vectorized, 'svm'), (softmax_loss_course, 'softmax')):
    report = lj.check_loss_and_grad(fn, W, X, y, reg, seed=seed)  # no reference named: found by value
    assert report.passed, report.summary()
    assert report.reference == name and report.num_coords == 40 and report.num_directions == 4
    print(f'{name} N=500 D=3073 C=10 reg={reg:g}: {report.seconds:.2f} s')  # the timing figure, not asserted


@pytest.mark.parametrize('reg', [5e-6, 5e1])
def test_planted_bugs_are_caught_at_assignment_scale(reg):
  W, X, y = _pixels(2)
  check = lambda fn: lj.check_loss_and_grad(fn, W, X, y, reg, num_coords=8, num_directions=1)
  flipped = check(lambda *a: (softmax_loss_course(*a)[0], -softmax_loss_course(*a)[1]))
  assert {'dW data term vs linear_jax', 'dW vs numerical (of fn)'} <= set(flipped.disagreements())
  no_mean = check(lambda *a: softmax_loss_course(*a, n_divides_dw=False))
  assert no_mean.disagreements() == ['dW data term vs linear_jax', 'dW vs numerical (of fn)']
  no_reg = check(lambda *a: softmax_loss_course(*a, reg_factor=0.0))
  assert 'dW regularization term vs linear_jax' in no_reg.disagreements()
  half = check(lambda *a: softmax_loss_course(*a, reg_factor=1.0, half_penalty=True))
  assert half.passed and half.reference == 'softmax', half.summary()
  assert len(half.conventions) == 1 and '0.5·reg·ΣW²' in half.summary()


def test_softmax_without_a_reference_is_matched_to_softmax():
  W, X, y = _problem(6)
  report = lj.check_loss_and_grad(softmax_loss_vectorized, W, X, y, 0.1)
  assert report.passed and report.reference == 'softmax' and 'matched by its loss value' in report.summary()
  unknown = lj.check_loss_and_grad(lambda *a: tuple(3 * v for v in softmax_loss_vectorized(*a)), W, X, y, 0.1)
  assert unknown.reference is None and unknown.passed, unknown.summary()  # finite differences alone
  assert 'fn vs finite differences only' in unknown.summary()


def test_a_step_across_a_hinge_is_a_kink_not_a_failure():
  W, X, y = _pixels(3)
  report = lj.check_loss_and_grad(svm_loss_vectorized, W, X, y, 5e-6, h=1e-4, num_coords=20, num_directions=2)
  assert report.passed, report.summary()
  assert report.comparisons[-1].num_kinks > 0 and 'at a kink, not a failure' in report.summary()
  flipped = lambda *a: (svm_loss_vectorized(*a)[0], -svm_loss_vectorized(*a)[1])
  bad = lj.check_loss_and_grad(flipped, W, X, y, 5e-6, h=1e-4, num_coords=20, num_directions=2)
  assert 'dW vs numerical (of fn)' in bad.disagreements()


def test_no_penalty_convention_is_named_where_the_two_cannot_be_told_apart():
  """At W = 0 the reg·ΣW² and the older 0.5·reg·ΣW² penalties give the same loss and dW: a correct
  function was said to use the older one there; at W ≠ 0 the older one is still named."""
  W, X, y = _problem(2)
  at_zero = lj.check_loss_and_grad(softmax_loss_course, np.zeros_like(W), X, y, 0.1)
  assert at_zero.passed and at_zero.conventions == [], at_zero.summary()
  half = lj.check_loss_and_grad(
    lambda *a: softmax_loss_course(*a, reg_factor=1.0, half_penalty=True), W, X, y, 0.1
  )
  assert half.passed and any('0.5·reg·ΣW²' in c for c in half.conventions), half.summary()


@pytest.mark.parametrize(
  'bad, message',
  [(7, r'y: label 7 at index 0 is outside \[0, 4\)'), (1.5, r'labels must be integers, got 1.5 at index 0')],
)
def test_a_bad_label_is_named_before_fn_is_called(bad, message):
  # fn's own indexing failed first (an IndexError in the user's code), or took 1.5 as a label.
  W, X, y = _problem(4)
  y = np.asarray(y, float if isinstance(bad, float) else int).copy()
  y[0] = bad
  called = []
  fn = lambda *a: called.append(1) or svm_loss_naive(*a)
  with pytest.raises(ValueError, match=message):
    lj.check_loss_and_grad(fn, W, X, y, 0.1, reference='svm')
  assert not called


def test_a_point_exactly_on_hinges_passes_a_correct_svm_and_fails_a_wrong_one():
  """Scores [1, 0, 0] by the bias column: every row of class 0 sits exactly on two hinges. Central
  differences of a piecewise-linear f are then the same at every step, so no kink was seen, and the
  course's correct SVM FAILed every probe; the second differences find a kink at W itself."""
  W, X, y = _problem(5, n=50, d=11, c=3)
  W = np.zeros_like(W)
  W[-1, 0] = 1.0
  report = lj.check_loss_and_grad(svm_loss_vectorized, W, X, y, 0.1)
  assert report.passed and report.comparisons[-1].num_kinks > 0, report.summary()
  flipped = lambda *a: (svm_loss_vectorized(*a)[0], -svm_loss_vectorized(*a)[1])
  assert 'dW vs numerical (of fn)' in lj.check_loss_and_grad(flipped, W, X, y, 0.1).disagreements()
  # The SVM with margin 0 at W = 0: every probe at a kink, and the verdict says it confirmed nothing.
  zero = lj.check_loss_and_grad(
    lambda *a: svm_loss_naive(*a, delta=0.0), np.zeros_like(W), X, y, 0.1, reference='svm', margin=0.0
  )
  assert zero.inconclusive and 'confirmed nothing' in zero.summary().splitlines()[0]
  assert not lj.check_loss_and_grad(svm_loss_vectorized, *_problem(5, n=50, d=11, c=3), 0.1).inconclusive


def test_a_margin_of_exactly_0_takes_either_subgradient_and_nothing_beyond_them():
  """Rows of class 0 sit exactly on two hinges. `margin >= 0` there is as valid as the course's
  `margin > 0`, and its data term (0.4 from linear_jax's) FAILed; it is now compared with the valid
  subgradient nearest to it. A dW that is none of them still fails: one entry off in a feature no tied
  row has, and a mask of `>=` with the correct class's count of `>` (its columns no longer sum to 0)."""
  W, X, y = _problem(5, n=50, d=11, c=3)
  W = np.zeros_like(W)
  W[-1, 0] = 1.0
  X[y == 0, 2] = 0.0  # feature 2: no tied row has it
  for on_hinge in (False, True):
    report = lj.check_loss_and_grad(lambda *a: svm_loss_vectorized(*a, on_hinge=on_hinge), W, X, y, 0.1)
    assert report.passed and ('exactly on a kink' in report.summary()) == on_hinge, report.summary()

  def off_by(*a):
    loss, dw = svm_loss_vectorized(*a, on_hinge=True)
    dw[2, 1] += 1e-3
    return loss, dw

  def mixed(W, X, y, reg):
    n = X.shape[0]
    scores = X.dot(W)
    m = scores - scores[np.arange(n), y][:, None] + 1
    mask = (m >= 0).astype(float)
    mask[np.arange(n), y] = 0
    strict = (m > 0).astype(float)
    strict[np.arange(n), y] = 0
    mask[np.arange(n), y] = -strict.sum(axis=1)
    return svm_loss_vectorized(W, X, y, reg)[0], X.T.dot(mask) / n + 2 * reg * W

  for wrong in (off_by, mixed):
    report = lj.check_loss_and_grad(wrong, W, X, y, 0.1)
    assert 'dW data term vs linear_jax' in report.disagreements(), report.summary()
  # Past MAX_GENERATOR_ENTRIES the data term is held entry by entry, and says so.
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(numpy_check, 'MAX_GENERATOR_ENTRIES', 0)
    loose = lj.check_loss_and_grad(lambda *a: svm_loss_vectorized(*a, on_hinge=True), W, X, y, 0.1)
    assert loose.passed and 'entry by entry' in loose.summary(), loose.summary()
    assert 'dW data term vs linear_jax' in lj.check_loss_and_grad(off_by, W, X, y, 0.1).disagreements()
  # A loss whose kinks are ints (the contract asks only for a sign change) has no Jacobian to cross them
  # by: the course's own subgradient is still checked, and nothing crashes (it was a TypeError).
  svm = lj.get_loss('svm')
  signs = dataclasses.replace(svm, kinks=lambda s, t, **hp: jnp.sign(svm.kinks(s, t, **hp)).astype(jnp.int32))
  assert lj.check_loss_and_grad(svm_loss_vectorized, W, X, y, 0.1, reference=signs).passed


@pytest.mark.parametrize(
  'out, message',
  [
    (lambda loss, dw: (loss, dw + 1j), 'dW of dtype complex128; it must be real'),  # passed, truncated
    (lambda loss, dw: (np.float32(loss), dw), 'loss in float32: the check needs float64'),  # false FAIL
    (lambda loss, dw: (loss, dw.astype(np.float32)), 'dW in float32'),
    (lambda loss, dw: (np.full(3, loss), dw), r'a scalar loss .* got shape \(3,\)'),  # a TypeError
    (lambda loss, dw: (None, dw), 'loss of dtype object'),
    (lambda loss, dw: (np.nan, dw), 'loss of nan at a finite W'),  # a FAIL named 'dW vs numerical'
  ],
)
def test_what_fn_returns_is_refused_by_name_when_it_cannot_be_checked(out, message):
  W, X, y = _problem(6)
  with pytest.raises(ValueError, match=message):
    lj.check_loss_and_grad(lambda *a: out(*svm_loss_naive(*a)), W, X, y, 0.1)


def test_two_kinks_of_one_row_on_one_hyperplane_span_one_subgradient_range():
  """Crammer-Singer at W = 0: the two wrong classes of every row tie for the largest score, two kink
  entries on one hyperplane. Either class, or any mix, is a valid subgradient; 2·e_j2 - e_j1 (twice
  the jump) is none, and passed the data term when each kink counted as a generator of its own."""
  rng = np.random.default_rng(0)
  n, d, c = 30, 6, 3
  X, y, W = rng.standard_normal((n, d)), rng.integers(0, c, n), np.zeros((d, 3))

  def crammer_singer(weights):
    def fn(W, X, y, reg):
      s = X @ W
      loss = np.mean((s + 1.0 - np.eye(c)[y]).max(1) - s[np.arange(n), y]) + reg * np.sum(W * W)
      G = -np.eye(c)[y]
      for i in range(n):
        j1, j2 = (j for j in range(c) if j != y[i])
        G[i, j1] += weights[0]
        G[i, j2] += weights[1]
      return loss, X.T @ G / n + 2 * reg * W

    return fn

  cases = (((1, 0), True), ((0.5, 0.5), True), ((0, 1), True), ((-1, 2), False), ((1, 1), False))
  for weights, valid in cases:
    report = lj.check_loss_and_grad(crammer_singer(weights), W, X, y, 0.1, reference='crammer_singer')
    assert ('dW data term vs linear_jax' not in report.disagreements()) == valid, (weights, report.summary())
