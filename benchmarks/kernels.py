"""Benchmark sections 1 and 5: the loss and its gradient against NumPy and PyTorch, and gradient checking.

Section 1 times the hand-derived and `jax.grad` gradients of the softmax and SVM losses on CIFAR-shaped
data against NumPy (and PyTorch when it is installed), and says whether the machine is bound by memory
or arithmetic for them. Section 5 times the vectorized numerical gradient against a coordinate loop.
"""

from absl import flags
import numpy as np

from .harness import data_sheet_bandwidth
from .harness import median_time
from .harness import median_times
from .training import cifar_like

FLAGS = flags.FLAGS


def _try_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel

    return torch
  except ImportError:
    return None


def numpy_value_and_grad(loss, W, b, x, y, reg):
  """The same formulas as grads.py, in plain vectorized NumPy."""
  n = x.shape[0]
  s = x @ W.T + b
  rows = np.arange(n)
  if loss == 'softmax':
    s = s - s.max(1, keepdims=True)
    e = np.exp(s)
    p = e / e.sum(1, keepdims=True)
    value = -np.log(p[rows, y]).mean()
    p[rows, y] -= 1.0
    g = p
  else:
    m = s - s[rows, y][:, None] + 1.0
    m[rows, y] = 0.0
    value = np.maximum(m, 0).sum(1).mean()
    g = (m > 0).astype(s.dtype)
    g[rows, y] = -g.sum(1)
  g /= n
  return value + reg * (W * W).sum(), g.T @ x + 2 * reg * W, g.sum(0)


def torch_value_and_grad(torch, loss, W, b, x, y, reg):
  n = x.shape[0]
  s = x @ W.T + b
  rows = torch.arange(n)
  if loss == 'softmax':
    p = torch.softmax(s, 1)
    value = -torch.log(p[rows, y]).mean()
    p[rows, y] -= 1.0
    g = p
  else:
    m = s - s[rows, y][:, None] + 1.0
    m[rows, y] = 0.0
    value = m.clamp(min=0).sum(1).mean()
    g = (m > 0).to(s.dtype)
    g[rows, y] = -g.sum(1)
  g /= n
  return value + reg * (W * W).sum(), g.T @ x + 2 * reg * W, g.sum(0)


def section_gradients():
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  from linear_jax.maths import grad_sources  # pylint: disable=import-outside-toplevel
  from linear_jax.maths import model  # pylint: disable=import-outside-toplevel

  n = 1000 if FLAGS.quick else 10000
  x, y = cifar_like(n)
  params = model.init_params(jax.random.PRNGKey(0), 3072, 10, 1e-3)
  xj, yj = jax.device_put(x), jax.device_put(y)
  reg = 1e-3
  w_np, b_np = np.asarray(params.W), np.asarray(params.b)
  torch = _try_torch()
  names = {
    'analytic': 'hand-derived (jit)',
    'autodiff': 'jax.grad (jit)',
    'numpy': 'NumPy',
    'torch': 'PyTorch',
  }
  # Everything of this section is timed in turns, so the ratios hold on a noisy machine.
  fns = {}
  read_jax = jax.jit(jnp.sum)
  fns['read_jax'] = lambda: jax.block_until_ready(read_jax(xj))
  fns['read_numpy'] = lambda: x.sum()
  for loss in ('softmax', 'svm'):
    for source in ('analytic', 'autodiff'):
      fn = jax.jit(lambda p, x, y, s=source, l=loss: grad_sources.value_and_grad(s, p, x, y, loss=l, reg=reg))
      fns[loss, source] = lambda f=fn: jax.block_until_ready(f(params, xj, yj))
    fns[loss, 'numpy'] = lambda l=loss: numpy_value_and_grad(l, w_np, b_np, x, y, reg)
    if torch is not None:
      tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
      tw, tb = torch.from_numpy(w_np.copy()), torch.from_numpy(b_np.copy())
      fns[loss, 'torch'] = lambda l=loss: torch_value_and_grad(torch, l, tw, tb, tx, ty, reg)
  # Where the time goes: the two products that read x, each alone.
  g = jax.device_put(np.full((n, 10), 1e-4, np.float32))
  scores_only = jax.jit(lambda w, x: x @ w.T)
  grad_only = jax.jit(lambda g, x: g.T @ x)
  fns['scores_matmul'] = lambda: jax.block_until_ready(scores_only(params.W, xj))
  fns['grad_matmul'] = lambda: jax.block_until_ready(grad_only(g, xj))
  # The compute floor: both products together are 4·N·D·C flops. At the
  # device's own dense-matmul peak, measured now, they cannot take less time.
  m = 2048 if jax.default_backend() == 'cpu' else 8192
  a = jax.device_put(np.ones((m, m), np.float32))
  square = jax.jit(jnp.dot)
  fns['square_matmul'] = lambda: jax.block_until_ready(square(a, a))
  # With few classes the gradient is bound by memory, as the issue assumed.
  y2 = jax.device_put((y % 2).astype(np.int32))
  for loss, c in (('softmax', 2), ('logistic', 1)):
    p_c = model.init_params(jax.random.PRNGKey(0), 3072, c, 1e-3)
    fn = jax.jit(lambda p, x, y, l=loss: grad_sources.value_and_grad('analytic', p, x, y, loss=l, reg=reg))
    fns['few', loss] = lambda f=fn, p=p_c: jax.block_until_ready(f(p, xj, y2))
  t = median_times(fns)

  t_read_jax, t_read_np = t['read_jax'], t['read_numpy']
  read = min(t_read_jax, t_read_np)  # the faster read is the machine's limit
  rows, out = [], {'bytes': x.nbytes, 'read_jax_s': t_read_jax, 'read_numpy_s': t_read_np}
  for loss in ('softmax', 'svm'):
    times = out[loss] = {source: t[loss, source] for source in names if (loss, source) in t}
    for source, ts in times.items():
      rows.append(
        [
          f'{loss} {names[source]}',
          f'{1e3 * ts:.2f}',
          f'{times["numpy"] / ts:.2f}×',
          f'{x.nbytes / ts / 1e9:.1f} GB/s ({100 * read / ts:.0f}% of read)',
        ]
      )
  t_s, t_g = out['scores_matmul_s'], out['grad_matmul_s'] = t['scores_matmul'], t['grad_matmul']
  rows.append(
    ['  of which: scores x·Wᵀ alone (jit)', f'{1e3 * t_s:.2f}', '', f'{x.nbytes / t_s / 1e9:.1f} GB/s']
  )
  rows.append(['  of which: Gᵀ·x alone (jit)', f'{1e3 * t_g:.2f}', '', f'{x.nbytes / t_g / 1e9:.1f} GB/s'])
  peak = 2 * m**3 / t['square_matmul']
  flops = 4 * n * 3072 * 10
  floor = flops / peak
  out.update(peak_flops=peak, gradient_flops=flops, compute_floor_s=floor)
  rows.append(
    [
      f'compute floor: 4·N·D·C = {flops / 1e9:.2f} GFLOP at the peak below',
      f'{1e3 * floor:.3f}',
      '',
      f'{x.nbytes / floor / 1e9:.1f} GB/s ({100 * read / floor:.0f}% of read at most)'
      if floor > read
      else f'{100 * floor / read:.0f}% of one read of x: memory is the bound',
    ]
  )
  rows.append([f'dense matmul peak ({m}² jnp.dot, jit)', '', '', f'{peak / 1e9:.0f} GFLOP/s'])
  few = out['few_classes_s'] = {loss: t['few', loss] for loss in ('softmax', 'logistic')}
  for loss, label in (('softmax', '2 classes'), ('logistic', 'binary, one score')):
    rows.append(
      [
        f'{loss} hand-derived (jit), {label}',
        f'{1e3 * few[loss]:.2f}',
        '',
        f'{x.nbytes / few[loss] / 1e9:.1f} GB/s ({100 * read / few[loss]:.0f}% of read)',
      ]
    )
  table = [['computation', 'median ms', 'speed-up vs NumPy', 'effective bandwidth of x']] + rows
  table.append(
    [
      'plain read of x (jnp.sum, jit)',
      f'{1e3 * t_read_jax:.2f}',
      '',
      f'{x.nbytes / t_read_jax / 1e9:.1f} GB/s',
    ]
  )
  table.append(
    ['plain read of x (NumPy sum)', f'{1e3 * t_read_np:.2f}', '', f'{x.nbytes / t_read_np / 1e9:.1f} GB/s']
  )
  # Which bound holds here: flops per byte of x against the machine's balance.
  balance = peak / (x.nbytes / read)
  best = min(out['softmax']['analytic'], out['svm']['analytic'])
  compute_bound = flops / x.nbytes > balance
  ceiling = (
    f'even at the dense-matmul peak it could reach at most {100 * read / floor:.0f}% of a read'
    if compute_bound
    else f'at the dense-matmul peak its arithmetic takes {100 * floor / read:.0f}% of the time of one read'
  )
  out['verdict'] = (
    f'Effective bandwidth, 10 classes: {100 * read / best:.0f}% of a plain read (target 50%). '
    f'The gradient does {flops / x.nbytes:.0f} flops per byte of x; this device does {balance:.1f} '
    f'flops in the time it reads a byte, so here the gradient is bound by '
    f'{"arithmetic" if compute_bound else "memory"}, and {ceiling}. With few classes, where memory is '
    f'the bound, the hand-derived gradient reaches {100 * read / min(few.values()):.0f}% of a read '
    "(x is read twice: Gᵀ·x needs all of a row's scores)."
  )
  kind = jax.devices()[0].device_kind
  sheet = data_sheet_bandwidth(kind)
  if sheet is not None:
    out['data_sheet_bandwidth'] = sheet
    out['verdict'] += (
      f" Against the data sheet's {sheet / 1e12:.2f} TB/s of this {kind}: the plain read reaches "
      f'{100 * x.nbytes / t_read_jax / sheet:.0f}%, '
      f'the 10-class gradient {100 * x.nbytes / best / sheet:.0f}%.'
    )
  out['torch'] = 'not installed' if torch is None else torch.__version__
  return f'1. Loss + gradient, {n:,} × 3,072 float32, 10 classes', table, out


def section_gradcheck():
  import jax  # pylint: disable=import-outside-toplevel
  from jax.flatten_util import ravel_pytree  # pylint: disable=import-outside-toplevel

  jax.config.update('jax_enable_x64', True)
  import linear_jax as lj  # pylint: disable=import-outside-toplevel
  from linear_jax.maths import gradcheck  # pylint: disable=import-outside-toplevel

  rows, out = [], {}
  params, x, y = gradcheck.random_problem(jax.random.PRNGKey(0), 'softmax', 64, 64, 10)
  f = lambda p: lj.objective(p, x, y, loss='softmax', reg=1e-3)
  v, unravel = ravel_pytree(params)
  pure = jax.jit(lambda v: lj.objective(unravel(v), x, y, loss='softmax', reg=1e-3))
  h = 1e-5

  def loop():
    grad = np.empty(v.size)
    for i in range(v.size):  # one coordinate at a time, the same jitted loss
      grad[i] = (float(pure(v.at[i].add(h))) - float(pure(v.at[i].add(-h)))) / (2 * h)
    return grad

  numerical = gradcheck.make_numerical_grad(f, h=h)  # compiled once, like the loop's loss
  t_vec = median_time(lambda: jax.block_until_ready(numerical(params)), repeats=3)
  t_loop = median_time(loop, repeats=1)
  out['full'] = {'params': int(v.size), 'vectorized_s': t_vec, 'loop_s': t_loop}
  rows.append(
    [
      f'full central-difference gradient, {v.size} params (vectorized vs loop)',
      f'{t_vec:.3f}',
      f'{t_loop:.3f}',
      f'{t_loop / t_vec:.1f}×',
    ]
  )
  params, x, y = gradcheck.random_problem(jax.random.PRNGKey(1), 'softmax', 64, 3072, 10)
  for method, kw in (('sparse', {'num_coords': 64}), ('directional', {'num_directions': 8})):
    run = lambda m=method, k=kw: lj.check_gradients(params, x, y, method=m, **k)
    t = median_time(run, repeats=3)
    assert run().passed
    out[method] = t
    rows.append([f'{method} check, 30,730 params (after compilation)', f'{t:.3f}', '', ''])
  header = ['gradient check', 'linear_jax s, median of 3', 'coordinate loop s, one run', 'speed-up']
  return '5. Gradient checking (float64)', [header] + rows, out
