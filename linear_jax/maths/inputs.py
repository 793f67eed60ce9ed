"""The arguments of the public functions (`lj.objective`, `lj.predict`, the gradients, the checker):
made arrays, and checked against each other before any compiled work.

A nested list is read as the array the user wrote; `Params` must be a `Params(W, b)` of finite
values and of the model's shape; `x`, the targets and the mask must agree on the examples and with
`W`. Each check raises a `ValueError` naming the argument; the values themselves are checked by
`validation`.
"""

import jax
import numpy as np

from linear_jax.maths import validation


def as_array(a, where):
  """`a` itself when it is an array (NumPy's, JAX's, a tracer), else `a` read as an array.

  A nested list of numbers is taken as the array the user wrote, not as chex's sequence of arrays
  (a NumPy array; a JAX one inside a transform, which sees the list's numbers as tracers); a ragged
  one is refused, naming `where`.
  """
  if hasattr(a, 'shape') and hasattr(a, 'dtype'):
    return a
  try:
    return np.asarray(a)
  except jax.errors.TracerArrayConversionError:  # a list of tracers: JAX flattened it inside a transform
    return jax.numpy.asarray(a)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where} must be an array or a rectangular nested list of numbers: {e}') from None


def check_params_kind(params):
  """Raises a `ValueError` unless `params` is a `Params(W, b)` (a dict failed in an AttributeError)."""
  if not (hasattr(params, '_replace') and hasattr(params, 'W') and hasattr(params, 'b')):
    hint = ': lj.Params(**params) makes one of a dict with keys W and b' if isinstance(params, dict) else ''
    raise ValueError(f'params must be an lj.Params(W, b), got a {type(params).__name__}{hint}.')


def check_params(params, num_outputs=None, num_features=None):
  """Raises a `ValueError` when concrete `params` hold a NaN or an infinity (a diverged model, whose
  scores rank no class: its argmax is class 0 for every row), or when `W` is not `[num_outputs,
  num_features]` (where given) or `b` not `[C]`."""
  check_params_kind(params)
  shape = np.shape(params.W)
  want = (num_outputs, num_features)
  if len(shape) != 2 or any(w is not None and n != w for n, w in zip(shape, want, strict=True)):
    expected = ', '.join(name if n is None else str(n) for name, n in zip('CD', want, strict=True))
    raise ValueError(f'W must be [{expected}] for this model and data, got shape {list(shape)}.')
  if params.b is not None and np.shape(params.b) != shape[:1]:
    raise ValueError(f'b must be [C] = [{shape[0]}], got shape {list(np.shape(params.b))}.')
  for name, a in (('W', params.W), ('b', params.b)):
    v = None if a is None else validation.concrete(a)
    if v is not None and not np.all(np.isfinite(v)):
      raise ValueError(
        f'{name} holds {np.size(v) - int(np.isfinite(v).sum())} non-finite value(s) (NaN or infinity): a '
        'model with them ranks no class, so it has no predictions or metrics.'
      )


def check_model_inputs(params, x):
  """`(params, x)` as arrays, after checking that `x` is a finite `[N, D]` batch for `params`."""
  check_params_kind(params)
  params = params._replace(W=as_array(params.W, 'W'), b=None if params.b is None else as_array(params.b, 'b'))
  x = as_array(x, 'x')
  validation.check_features(x)
  w = params.W
  if np.ndim(w) != 2:
    raise ValueError(f'W must be [C, D], got shape {np.shape(w)}.')
  num_outputs, dim = np.shape(w)
  if np.shape(x)[1] != dim:
    form = ' (bias-trick form: x must end with the constant-1 feature)' if params.b is None else ''
    raise ValueError(
      f'x has {np.shape(x)[1]} features but W expects {dim}{form}: W is {np.shape(w)}, x is {np.shape(x)}.'
    )
  if params.b is not None and np.shape(params.b) != (num_outputs,):
    raise ValueError(f'b must be [C] = [{num_outputs}], got shape {np.shape(params.b)}.')
  return params, x


def check_inputs(params, x, targets, kind, reg=0.0, mask=None):
  """All checks of one objective call (shapes agree, values are valid): `(params, x, targets, mask)`
  as arrays."""
  params, x = check_model_inputs(params, x)
  targets = as_array(targets, 'targets')
  mask = None if mask is None else as_array(mask, 'mask (sample weights)')
  num_outputs = np.shape(params.W)[0]
  if np.shape(targets)[:1] != np.shape(x)[:1]:
    raise ValueError(
      f'targets hold {np.shape(targets)[0] if np.ndim(targets) else 0} examples but x holds {np.shape(x)[0]}.'
    )
  validation.check_targets(targets, kind, num_outputs)
  validation.check_nonnegative('reg', reg)
  if mask is not None:
    validation.check_weights(mask, np.shape(x)[0], where='mask (sample weights)')
  return params, x, targets, mask
