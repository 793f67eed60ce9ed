"""Host-side checks of values (numbers, names, features, targets, weights), run before any compiled work.

JAX clamps an out-of-range index silently and `one_hot` gives a zero row for
one, so a bad label inside `jit` is a wrong number rather than an error. Every
check here runs on concrete (NumPy or JAX) arrays and raises a `ValueError`
that names the problem; on tracers only the static shape checks run. The
public functions' arguments are made arrays and checked against each other in
`inputs`.
"""

import jax
import numpy as np

TARGET_KINDS = ('class', 'binary', 'real')


def check_name(what, name, valid):
  """Raises unless `name` is one of `valid`, listing the valid names."""
  if name not in valid:
    raise ValueError(f'Unknown {what} {name!r}; valid: {", ".join(sorted(valid))}.')


# Seeds are `[0, 2**32)`: `jax.random.PRNGKey` keeps 32 bits of a seed unless 64-bit mode is on (2**32
# would be seed 0 again, silently), refuses one of 64 bits or more with a traceback, and NumPy's
# generators refuse a negative one. The bound `lr_sweep --seeds` holds to as well (`sweep.BOUNDS`).
SEED_LIMIT = 2**32


def check_seed(what, seed):
  """Raises a `ValueError` unless `seed` is an integer in `[0, 2**32)` (`SEED_LIMIT`).

  Args:
    what: the name the message gives the seed (`'seed'`).
    seed: the value to check.

  Raises:
    ValueError: `'seed must be an integer in [0, 2**32), got 1180591620717411303424.'`
  """
  ok = isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and 0 <= seed < SEED_LIMIT
  if not ok:
    raise ValueError(f'{what} must be an integer in [0, 2**32), got {seed!r}.')


def is_number(value):
  """Whether `value` is a real number: a Python, NumPy or 0-d array one (a bool is not one here)."""
  if isinstance(value, (bool, np.bool_)):
    return False
  return isinstance(value, (int, float, np.integer, np.floating)) or (
    np.ndim(value) == 0 and hasattr(value, 'dtype') and np.issubdtype(value.dtype, np.number)
  )


def is_whole(n, low=1, high=None):
  """Whether `n` is a whole number (a Python or NumPy integer, not a bool) in `[low, high]`."""
  return (
    isinstance(n, (int, np.integer))
    and not isinstance(n, (bool, np.bool_))
    and n >= low
    and (high is None or n <= high)
  )


def check_whole(what, n, low=1, high=None):
  """Raises a `ValueError` naming `what` unless `n` is a whole number in `[low, high]` (`is_whole`)."""
  if not is_whole(n, low, high):
    most = '' if high is None else f' (and at most {high:,})'
    raise ValueError(f'{what} must be a whole number >= {low}{most}, got {n!r}.')


def concrete(a):
  """`a` as a NumPy array, or `None` when it is a tracer inside a transform."""
  if isinstance(a, jax.core.Tracer):
    return None
  return np.asarray(a)


def one_number(what, value):
  """`value` as a 0-d NumPy array, or `None` for a tracer; raises unless it is one real number (a string, a
  bool or an array of several is refused: an array `reg` or margin broadcast into a vector objective, or a
  penalty per column, silently)."""
  v = concrete(value)
  if v is None:
    return None
  if not (v.dtype.kind in 'iuf' or v.dtype == jax.numpy.bfloat16):  # a string, a bool
    raise ValueError(f'{what} must be a number, got {value!r}.')
  if v.ndim:
    raise ValueError(f'{what} must be one number, got an array of shape {list(v.shape)}.')
  return v


def check_nonnegative(what, value):
  v = one_number(what, value)
  if v is not None and not (np.isfinite(v) and v >= 0):
    raise ValueError(f'{what} must be finite and >= 0, got {v.tolist()}.')


def all_finite(x):
  """Whether every value of the array `x` is finite, in one read of it and no whole-size temporary.

  A NaN or an infinity makes the sum of any set of values holding it
  non-finite (IEEE arithmetic propagates them), so finite row sums prove
  every value finite. The row sums are one NumPy reduction (`einsum`); a row
  whose sum is not finite (a non-finite value, or finite values whose sum
  overflows) is then checked value by value. Not a BLAS product `x @ 1`:
  its threads spin for a while after the call, and on a CPU they would
  take the cores from the compiled epochs that follow (the first epochs of
  a fit ran about 25% slower).
  """
  if x.dtype not in (np.float32, np.float64) or x.ndim != 2 or x.size == 0:
    return bool(np.isfinite(x).all()) if x.dtype.kind in 'fc' or x.dtype == jax.numpy.bfloat16 else True
  with np.errstate(over='ignore', invalid='ignore'):
    sums = np.einsum('ij->i', x)
  suspect = np.flatnonzero(~np.isfinite(sums))
  return not len(suspect) or bool(np.isfinite(x[suspect]).all())


def check_features(x, where='x'):
  """Raises if `x` is not a non-empty `[N, D]` array of finite numbers."""
  if np.ndim(x) != 2:
    raise ValueError(f'{where}: features must be [N, D], got shape {np.shape(x)}.')
  if np.shape(x)[0] == 0:
    raise ValueError(f'{where}: empty batch (N = 0).')
  xv = concrete(x)
  if xv is None:
    return
  real = np.issubdtype(xv.dtype, np.number) or xv.dtype == jax.numpy.bfloat16  # bfloat16 is no np.number
  if not real or np.issubdtype(xv.dtype, np.complexfloating):
    raise ValueError(f'{where}: features must be real numbers, got dtype {xv.dtype}.')
  if all_finite(xv):
    return
  bad = ~np.isfinite(xv)
  if bad.any():
    i, j = np.argwhere(bad)[0]
    raise ValueError(
      f'{where}: {int(bad.sum())} non-finite feature value(s); first at example {i}, feature {j}: {xv[i, j]}.'
    )


def check_targets(targets, kind, num_outputs, where='targets'):
  """Raises unless `targets` fit a loss of target kind `kind` with C outputs.

  Args:
    targets: the labels or real targets.
    kind: `'class'`, `'binary'` or `'real'`.
    num_outputs: C, the number of scores per example.
    where: how the message names the targets (a file name, say).
  """
  check_name('target kind', kind, TARGET_KINDS)
  shape = np.shape(targets)
  if kind == 'class' and num_outputs < 2:
    raise ValueError(
      f'{where}: a classification loss needs C >= 2 scores per example, '
      f"got C = {num_outputs}; use a loss with 'binary' targets and a single score."
    )
  if kind == 'binary' and num_outputs != 1:
    raise ValueError(
      f'{where}: a binary loss needs a single score per example (C = 1), got C = {num_outputs}.'
    )
  if kind in ('class', 'binary') and len(shape) != 1:
    t = concrete(targets)
    one_hot = t is not None and t.ndim == 2 and np.isin(t, (0, 1)).all() and (t.sum(axis=1) == 1).all()
    hint = ' (one-hot rows: the labels are their argmax(axis=1))' if one_hot else ''
    raise ValueError(f'{where}: labels must be [N], got shape {shape}{hint}.')
  if kind == 'real' and not (
    (len(shape) == 1 and num_outputs == 1) or (len(shape) == 2 and shape[1] == num_outputs)
  ):
    raise ValueError(
      f'{where}: regression targets must be [N] (C = 1) or [N, C] with C = {num_outputs}, got shape {shape}.'
    )
  t = concrete(targets)
  if t is None:
    return
  if t.dtype == bool or not np.issubdtype(t.dtype, np.number):
    raise ValueError(f'{where}: targets must be numbers, got dtype {t.dtype}.')
  bad = ~np.isfinite(t)
  if bad.any():
    i = int(np.argwhere(bad)[0][0])
    raise ValueError(f'{where}: non-finite target at index {i}: {t.reshape(len(t), -1)[i]}.')
  if kind == 'real':
    return
  i = first_non_integer(t)
  if i is not None:
    raise ValueError(
      f'{where}: labels must be integers, got {t[i]} at index {i} '
      f'(real-valued targets given to a {kind} loss?).'
    )
  high = 2 if kind == 'binary' else num_outputs
  out = (t < 0) | (t >= high)
  if out.any():
    i = int(np.argmax(out))
    valid = '{0, 1}' if kind == 'binary' else f'[0, {high})'
    raise ValueError(f'{where}: label {t[i]:g} at index {i} is outside {valid}.')


def first_non_integer(t):
  """The index of the first value of `t` (finite numbers) that is not a whole number, or `None`."""
  if not np.issubdtype(t.dtype, np.floating):
    return None
  frac = t != np.round(t)
  return int(np.argmax(frac)) if frac.any() else None


def check_weights(weights, num_examples, where='sample weights'):
  """Raises unless `weights` are `[N]` finite numbers ≥ 0, not all 0."""
  if np.shape(weights) != (num_examples,):
    raise ValueError(f'{where}: must be [N] = [{num_examples}], got shape {np.shape(weights)}.')
  w = concrete(weights)
  if w is None:
    return
  if w.dtype == bool or not np.issubdtype(w.dtype, np.number):
    raise ValueError(f'{where}: must be numbers, got dtype {w.dtype}.')
  bad = ~np.isfinite(w) | (w < 0)
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f'{where}: must be finite and >= 0; index {i} holds {w[i]}.')
  if not (w > 0).any():
    raise ValueError(f'{where}: all {num_examples} are 0, so no example counts.')
