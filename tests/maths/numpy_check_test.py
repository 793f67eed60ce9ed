"""check_loss_and_grad: the course's NumPy (loss, dW) functions, checked as they are written."""

import numpy as np
import pytest

import linear_jax as lj


def svm_loss_naive(W, X, y, reg):
  """The course's multiclass SVM, W [D, C], written with loops."""
  dW = np.zeros(W.shape)
  loss = 0.0
  for i in range(X.shape[0]):
    scores = X[i].dot(W)
    for j in range(W.shape[1]):
      if j == y[i]:
        continue
      margin = scores[j] - scores[y[i]] + 1
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
