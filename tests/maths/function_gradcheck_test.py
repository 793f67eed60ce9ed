"""check_function_gradients: any scalar function of any pytree, a two-layer network included."""

import dataclasses
import json
import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linear_jax as lj
from linear_jax.maths import gradcheck


def _net(key, d=5, h=4, c=3, n=7):
  k1, k2, k3, k4 = jax.random.split(key, 4)
  params = {
    'w1': jax.random.normal(k1, (d, h), jnp.float64),
    'b1': 0.1 * jax.random.normal(k2, (h,), jnp.float64),
    'w2': jax.random.normal(k3, (h, c), jnp.float64),
  }
  x = jax.random.normal(k4, (n, d), jnp.float64)
  y = jnp.arange(n) % c
  return params, x, y


def loss(params, x, y):
  """Softmax cross-entropy of a two-layer ReLU network, mean over examples."""
  hidden = jax.nn.relu(x @ params['w1'] + params['b1'])
  return jnp.mean(lj.LOSSES['softmax'].value(hidden @ params['w2'], y))


def backward(params, x, y, bug=None):
  """The backward pass written by hand: softmax − onehot, then the chain rule twice."""
  pre = x @ params['w1'] + params['b1']
  hidden = jax.nn.relu(pre)
  g = lj.LOSSES['softmax'].score_grad(hidden @ params['w2'], y) / x.shape[0]
  dw2 = hidden.T @ g
  dhidden = g @ params['w2'].T
  dpre = dhidden * (pre > 0)
  if bug == 'relu_mask':  # a classic mistake: the ReLU's gate forgotten
    dpre = dhidden
  grads = {'w1': x.T @ dpre, 'b1': dpre.sum(0), 'w2': dw2}
  if bug == 'transpose':
    grads['w2'] = (g.T @ hidden).T * 1.5
  return grads


def relu_kinks(params, x, y):
  del y
  return x @ params['w1'] + params['b1']


@pytest.mark.parametrize('method', gradcheck.METHODS)
def test_correct_backward_pass_passes(method):
  params, x, y = _net(jax.random.PRNGKey(0))
  report = lj.check_function_gradients(loss, params, backward, args=(x, y), kinks=relu_kinks, method=method)
  assert report.passed, report.summary()
  assert report.loss == 'loss' and report.penalty is None
  assert report.num_params == 5 * 4 + 4 + 4 * 3


@pytest.mark.parametrize('method', ['central', 'sparse'])
def test_planted_mistake_fails_by_name(method):
  params, x, y = _net(jax.random.PRNGKey(1))
  wrong = lambda p, x_, y_: backward(p, x_, y_, bug='relu_mask')
  report = lj.check_function_gradients(
    loss, params, wrong, args=(x, y), kinks=relu_kinks, method=method, num_coords=40
  )
  assert not report.passed
  first = report.comparisons[0]
  assert first.pair == 'analytic vs autodiff' and not first.passed
  assert all(name.startswith(("['w1']", "['b1']")) for name, *_ in first.worst)
  assert "['w1'][" in report.summary() or "['b1'][" in report.summary()


def test_directional_failure_escalates_to_the_leaf_and_its_coordinates():
  params, x, y = _net(jax.random.PRNGKey(2))
  wrong = lambda p, x_, y_: backward(p, x_, y_, bug='transpose')
  report = lj.check_function_gradients(
    loss, params, wrong, args=(x, y), kinks=relu_kinks, method='directional'
  )
  assert not report.passed
  escalated = [c for c in report.comparisons if c.pair.startswith('analytic vs numerical: ')]
  assert [c.pair for c in escalated] == ["analytic vs numerical: ['w2']"]
  assert escalated[0].num_failed > 0 and all(n.startswith("['w2'][") for n, *_ in escalated[0].worst)


def test_richardson_settles_where_a_plain_step_decides_nothing():
  # d/dw exp(a w) has third derivative a³ exp(a w): the central error h² a² / 6 is 2e-5 here.
  a = 1000.0
  f = lambda p: jnp.sum(jnp.exp(a * p['w']))
  grad = lambda p: {'w': a * jnp.exp(a * p['w'])}
  params = {'w': jnp.asarray([0.001, -0.002, 0.003])}
  # A plain step's quotients miss by no more than their own error (they move as the step halves): no
  # verdict, and a report that says so; Richardson's settle, and confirm the gradient.
  plain = lj.check_function_gradients(f, params, grad, method='central')
  assert plain.passed and plain.inconclusive and plain.comparisons[1].num_unsettled == 3, plain.summary()
  assert 'confirmed nothing' in plain.summary() and 'richardson=True' in plain.summary()
  extrapolated = lj.check_function_gradients(f, params, grad, method='central', richardson=True)
  assert extrapolated.passed and not extrapolated.inconclusive, extrapolated.summary()
  assert extrapolated.comparisons[1].num_unsettled == 0
  # A gradient 1% off is more than the settled quotients' error: it fails.
  off = lambda p: {'w': 1.01 * a * jnp.exp(a * p['w'])}
  wrong = lj.check_function_gradients(f, params, off, method='central', richardson=True)
  assert not wrong.comparisons[1].passed and wrong.comparisons[1].num_unsettled == 0, wrong.summary()


FLOAT32_PIXELS = """
import json, numpy as np, jax, jax.numpy as jnp, linear_jax as lj
assert not jax.config.jax_enable_x64
rng = np.random.default_rng(0)
x = jnp.asarray(rng.uniform(-128, 128, (200, 3073)), jnp.float32)
y = jnp.asarray(rng.integers(0, 10, 200))
w = jnp.asarray(rng.standard_normal((3073, 10)) * 1e-4, jnp.float32)

def f(w, x, y, cut=False):
  s = x @ w
  picked = s[jnp.arange(len(y)), y]
  return jnp.mean(jax.nn.logsumexp(s, axis=1) - (jax.lax.stop_gradient(picked) if cut else picked))

def grad(w, x, y):
  p = jax.nn.softmax(x @ w, axis=1) - jax.nn.one_hot(y, 10)
  return x.T @ p / len(y)

out = {}
for method in ('sparse', 'directional'):
  right = lj.check_function_gradients(f, w, grad, args=(x, y), method=method)
  out[method] = [right.passed, right.comparisons[1].num_unsettled, right.summary()]
cut = lambda w, x, y: f(w, x, y, cut=True)  # jax.grad of it misses a term: finite differences must tell
wrong = lj.check_function_gradients(cut, w, jax.grad(cut), args=(x, y), method='sparse')
out['cut'] = [wrong.passed, [c.num_failed for c in wrong.comparisons], wrong.summary()]
print(json.dumps(out))
"""


def test_float32_at_pixel_scale_passes_a_right_gradient_and_fails_a_wrong_one():
  """x64 off (a fresh process): float32's default step moves pixel-scale scores by ~1, and its quotients
  missed a right softmax gradient by up to 50% (20 of 64 sparse coordinates FAILed). Those are within the
  quotients' own error; a gradient that `stop_gradient` cut a term from is not."""
  env = {**os.environ, 'JAX_ENABLE_X64': '0', 'JAX_PLATFORMS': 'cpu'}
  res = subprocess.run(
    [sys.executable, '-c', FLOAT32_PIXELS], capture_output=True, text=True, timeout=300, env=env, check=False
  )
  assert res.returncode == 0, res.stderr[-3000:]
  out = json.loads(res.stdout.strip().splitlines()[-1])
  for method in ('sparse', 'directional'):
    passed, unsettled, summary = out[method]
    assert passed, summary
    if unsettled:
      assert 'check in float64' in summary, summary
  assert out['sparse'][1] > 0, out['sparse'][2]  # what made it FAIL before: quotients this step cannot settle
  passed, failed, summary = out['cut']
  assert not passed and failed[0] == 0 and failed[1] > 0, summary  # jax.grad agrees; the quotients do not


def test_coordinate_names_come_from_tree_paths():
  names = gradcheck.coordinate_names({'a': jnp.zeros((2, 1)), 'b': (jnp.zeros(()), jnp.zeros(2))})
  assert names == ["['a'][0, 0]", "['a'][1, 0]", "['b'][0]", "['b'][1][0]", "['b'][1][1]"]
  p = lj.Params(W=jnp.zeros((2, 2)), b=jnp.zeros(2))
  assert (
    gradcheck.coordinate_names(p)[:2] == ['W[0, 0]', 'W[0, 1]']
    and gradcheck.coordinate_names(p)[-1] == 'b[1]'
  )


def test_default_step_follows_the_dtype():
  params, x, y = _net(jax.random.PRNGKey(3))
  report = lj.check_function_gradients(loss, params, backward, args=(x, y), kinks=relu_kinks)
  assert report.step == gradcheck.DEFAULT_STEP['float64']['central'] and report.dtype == 'float64'
  assert gradcheck.DEFAULT_STEP['float32']['central'] > 100 * report.step


def test_matches_numpy_check_on_a_known_function():
  # f(w) = Σ w³: the gradient 3w² is known in closed form; 2w² is not it.
  w = {'w': jnp.linspace(-1.0, 1.0, 6)}
  f = lambda p: jnp.sum(p['w'] ** 3)
  assert lj.check_function_gradients(f, w, lambda p: {'w': 3 * p['w'] ** 2}).passed
  bad = lj.check_function_gradients(f, w, lambda p: {'w': 2 * p['w'] ** 2})
  assert not bad.passed and bad.to_dict()['passed'] is False
  np.testing.assert_allclose(bad.comparisons[1].num_compared, 6)


@pytest.mark.parametrize(
  'grad_fn,match',
  [
    (lambda p: {'w': p['w'][:2]}, r"shape \(2,\) at \['w'\]"),
    (lambda p: [p['w']], 'structure'),
  ],
)
def test_rejects_gradients_of_another_shape(grad_fn, match):
  with pytest.raises(ValueError, match=match):
    lj.check_function_gradients(lambda p: jnp.sum(p['w']), {'w': jnp.ones(3)}, grad_fn)


def test_rejects_integer_leaves_and_forward_richardson():
  with pytest.raises(ValueError, match=r"params\['n'\]: gradients need float arrays"):
    lj.check_function_gradients(lambda p: 0.0, {'n': jnp.arange(3)}, lambda p: p)
  with pytest.raises(ValueError, match='richardson=True extrapolates central differences'):
    lj.check_function_gradients(
      lambda p: jnp.sum(p), jnp.ones(2), jnp.ones_like, method='forward', richardson=True
    )


def test_a_function_that_reads_a_global_is_checked_as_it_is_now():
  """A notebook's loss reads `reg`; the gradient forgets the penalty. Checked at reg = 0 it is right; at
  reg = 10 the cached compiled copy of the loss still held reg = 0, and the wrong gradient passed."""
  state = {'reg': 0.0}
  loss = lambda w: jnp.sum(jnp.sin(w)) + state['reg'] * jnp.sum(w**2)
  grad = jnp.cos
  w = jnp.linspace(-1.0, 1.0, 4)
  assert lj.check_function_gradients(loss, w, grad).passed
  state['reg'] = 10.0
  report = lj.check_function_gradients(loss, w, grad)
  assert not report.passed and not report.comparisons[0].passed, report.summary()
  assert lj.check_function_gradients(loss, w, lambda w: jnp.cos(w) + 20.0 * w).passed


def test_a_callable_object_is_checked_though_it_cannot_be_hashed():
  @dataclasses.dataclass
  class Quadratic:
    scale: float

    def __call__(self, w):
      return self.scale * jnp.sum(w**2)

  w = jnp.arange(3.0)
  assert lj.check_function_gradients(Quadratic(2.0), w, lambda w: 4.0 * w).passed
  assert not lj.check_function_gradients(Quadratic(2.0), w, lambda w: 2.0 * w).passed


@pytest.mark.parametrize('offset', [1e9, 1e10])
def test_a_correct_gradient_of_a_function_with_a_large_value_passes(offset):
  # A step of 1e-8 moves f by less than its last place: the rounding floor measured 0 and read the
  # quotients' rounding (eps·|f|/h, 0.02 at 1e9) as errors of the right gradient.
  f = lambda p: offset + jnp.sum(jnp.sin(p['w']))
  p = {'w': jnp.linspace(-1.0, 1.0, 5)}
  assert lj.check_function_gradients(f, p, lambda p: {'w': jnp.cos(p['w'])}).passed
  assert not lj.check_function_gradients(f, p, lambda p: {'w': jnp.cos(p['w']) + 1e-6}).passed


_W = {'w': jnp.arange(3.0) + 0.5}
_CUBE = lambda p: jnp.sum(p['w'] ** 3)
_CUBE_GRAD = lambda p: {'w': 3 * p['w'] ** 2}


@pytest.mark.parametrize(
  'f, params, grad_fn, message',
  [
    (lambda p: p['w'] ** 3, _W, _CUBE_GRAD, r'must return a real scalar .*got float64\[3\]'),  # jax's words
    (lambda p: (_CUBE(p), 0.0), _W, _CUBE_GRAD, 'must return a real scalar'),
    (lambda p: _CUBE(p).astype(jnp.int32), _W, _CUBE_GRAD, r'got int32\[\]'),
    (lambda p: _CUBE(p) + 0j, _W, _CUBE_GRAD, r'got complex128\[\]'),
    (lambda p: float(_CUBE(p)), _W, _CUBE_GRAD, 'JAX cannot trace it'),  # named the checker's flat_f
    (lambda p: _CUBE(p) if p['w'][0] > 0 else 0.0, _W, _CUBE_GRAD, r'no Python if, float\(\)'),
    (lambda p: 0.0, {}, lambda p: {}, 'params have no coordinates'),  # an IndexError inside JAX
    (lambda p: jnp.sum(p['w']), {'w': jnp.zeros(0)}, lambda p: p, 'params have no coordinates'),
    (_CUBE, _W, lambda p: {'w': 3 * p['w'] ** 2 + 1j}, r"complex at \['w'\]"),  # passed, truncated
  ],
)
def test_a_function_or_gradient_that_cannot_be_checked_is_refused_by_name(f, params, grad_fn, message):
  with pytest.raises(ValueError, match=message):
    lj.check_function_gradients(f, params, grad_fn)


def _exp_with_grad_off(a, factor):
  """`f(p) = Σ exp(a·w)` whose `jax.grad` (a custom rule) is `factor` times the true one."""

  @jax.custom_jvp
  def e(w):
    return jnp.exp(a * w)

  @e.defjvp
  def _(primals, tangents):
    (w,), (dw,) = primals, tangents
    return e(w), factor * a * jnp.exp(a * w) * dw

  return lambda p: jnp.sum(e(p['w']))


def test_quotients_judge_by_their_own_error_under_richardson_and_at_a_pole():
  # A jax.grad 1% off: Richardson's quotients, settled to 1e-7, catch it along directions and coordinates
  # alike (their error is taken from the extrapolated quotient at h/2, not from a plain one).
  f = _exp_with_grad_off(7e4, 1.01)
  params = {'w': jnp.asarray([1e-6, -2e-6, 3e-6])}
  for method in ('central', 'directional'):
    report = lj.check_function_gradients(f, params, None, method=method, richardson=True)
    assert not report.passed and report.unsettled == 0, report.summary()
  # A pole just beyond h/2 of w[0]: the quotient at h is right, its re-take at h/2 infinite, which is no
  # error estimate: a jax.grad of -500 there still fails, and nothing overflows.
  h = 1e-5

  @jax.custom_jvp
  def pole(w):
    return 1e-30 / (w - 1.0 - h / 2) ** 2

  @pole.defjvp
  def _(primals, tangents):
    (w,), (dw,) = primals, tangents
    return pole(w), -500.0 * dw

  g = lambda p: jnp.sum(p['w'] ** 2) + pole(p['w'][0])
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    report = lj.check_function_gradients(g, {'w': jnp.asarray([1.0, 2.0, 3.0])}, None, h=h)
  assert not report.passed and report.comparisons[0].worst[0][0] == "['w'][0]", report.summary()


def test_a_check_with_quotients_that_decided_nothing_says_so_in_its_verdict():
  # sin(1e5 w) turns within the default step in two coordinates and not in the other six.
  f = lambda p: jnp.sum(jnp.sin(1e5 * p['sharp'])) + jnp.sum(jnp.exp(p['smooth']))
  grad = lambda p: {'sharp': 1e5 * jnp.cos(1e5 * p['sharp']), 'smooth': jnp.exp(p['smooth'])}
  params = {'sharp': jnp.asarray([1e-5, 3e-5]), 'smooth': jnp.linspace(-1.0, 1.0, 6)}
  report = lj.check_function_gradients(f, params, grad)
  assert report.passed and report.unsettled == 2 and not report.inconclusive, report.summary()
  assert report.to_dict()['unsettled'] == 2
  assert 'OK, but 2 of the 8 difference quotients decided nothing' in report.summary()
  assert 'richardson=True' in report.summary()
  forward = lj.check_function_gradients(f, params, grad, method='forward')  # which Richardson cannot take
  assert forward.passed and forward.unsettled and 'richardson' not in forward.summary(), forward.summary()
  # The smooth leaf's quotients settle, and a gradient wrong there fails.
  off = lambda p: {**grad(p), 'smooth': 1.001 * jnp.exp(p['smooth'])}
  wrong = lj.check_function_gradients(f, params, off)
  assert not wrong.passed and {n for n, *_ in wrong.comparisons[1].worst} <= {
    f"['smooth'][{i}]" for i in range(6)
  }, wrong.summary()
