"""A `Loss` record tried on a small problem: each function's output of the right shape, of floats,
finite, for five examples and for seven, and for one output more.

A record is tried when it is registered (shapes only, traced with
`jax.eval_shape`, which starts no backend) and before a run (outputs computed
too), so a loss that misbehaves is refused naming the field at fault, not
deep inside `jit`.
"""

from collections.abc import Mapping
import weakref

import jax
import jax.numpy as jnp
import numpy as np


def _probe_inputs(kind):
  """Small scores and targets of target kind `kind`, as NumPy arrays, to try a record on: five examples
  (`probe` also traces seven, so a `value` of a fixed shape passes neither)."""
  scores = np.asarray(
    [[0.3, -1.2, 2.0], [1.5, 0.1, -0.4], [-2.0, 0.7, 0.2], [0.0, 0.9, -1.1], [0.8, -0.3, 0.5]], np.float32
  )
  if kind == 'class':
    return scores, np.asarray([0, 2, 1, 2, 0], np.int32)
  if kind == 'binary':
    return scores[:, :1], np.asarray([0, 1, 1, 0, 1], np.int32)
  return scores[:, :2], scores[:, 1:] * 0.5 + 0.25


# Records whose output was found finite, held weakly: an id could be reused by a record made later.
_PROBED = weakref.WeakSet()


def quadratic_in_targets(loss, hparams: Mapping, scale: float = 1.0) -> bool:
  """Whether a real-target `loss` grows as the square of the targets' units at `scale`: `value(c·s, c·t)
  = c²·value(s, t)` for c = 2 and ½ at `_probe_inputs('real')` times `scale`. Its gradient then grows
  with the units, as the squared error's does; l1's and Huber's beyond `δ` do not
  (`records.gradient_scale`)."""
  s, t = _probe_inputs('real')
  v = lambda c: np.asarray(loss.value(jnp.asarray(c * scale * s), jnp.asarray(c * scale * t), **hparams))
  base = v(1.0).astype(np.float64)
  return bool(np.all(np.isfinite(base))) and all(
    np.allclose(v(c), c * c * base, rtol=1e-4) for c in (2.0, 0.5)
  )


def probe(loss, concrete: bool = False) -> None:
  """Tries `loss`'s functions on a small problem; raises naming the field that misbehaves.

  Catches, at registration rather than deep inside `jit`: a function that
  raises, a `value` that is not `[N]`, a `score_grad` that is not `[N, C]`.
  By default only shapes are traced (`jax.eval_shape`, which starts no
  backend, so a multi-process run can still start after a loss is loaded);
  `concrete=True` also computes the output and refuses non-finite values
  (training and the gradient checker do this before any work).
  """
  if concrete and loss in _PROBED:
    return
  scores, targets = _probe_inputs(loss.targets)
  n, c = scores.shape
  expected = {'value': (n,), 'score_grad': (n, c), 'kinks': None}
  calls = {
    field: lambda s, t, fn=fn: jnp.asarray(fn(s, t, **loss.hparams))
    for field in expected
    if (fn := getattr(loss, field)) is not None
  }
  # Every field in one program (compiled, or only traced); where that fails, one per field names the culprit.
  everything = lambda s, t: {f: call(s, t) for f, call in calls.items()}
  try:
    together = (
      jax.jit(everything)(scores, targets) if concrete else jax.eval_shape(everything, scores, targets)
    )
  except Exception:  # noqa: BLE001 - reported below, by field
    together = None
  for field, call in calls.items():
    shape = expected[field]
    try:
      if together is not None:
        out = together[field]
      else:
        out = jax.jit(call)(scores, targets) if concrete else jax.eval_shape(call, scores, targets)
    except Exception as e:  # noqa: BLE001 - any failure of user code is reported by field
      raise _raised(loss, field, e, scores, targets) from e
    if shape is not None:
      _check_shape(loss, field, out, shape, scores)
    else:
      _check_rows(loss, field, out, scores)
    if shape is not None and not jnp.issubdtype(out.dtype, jnp.floating):  # jax.grad needs real outputs
      raise ValueError(
        f'Loss {loss.name!r}: field {field!r} must return floating-point values, got {out.dtype}.'
      )
    if concrete and field != 'kinks' and not np.all(np.isfinite(np.asarray(out))):
      raise ValueError(f'Loss {loss.name!r}: field {field!r} returned non-finite values on finite scores.')
  _check_batch_shapes(loss, calls, scores, targets)
  if concrete:
    _PROBED.add(loss)


def _raised(loss, field, e, scores, targets):
  return ValueError(
    f'Loss {loss.name!r}: field {field!r} raised {type(e).__name__}: {e} on scores {scores.shape} and '
    f'{loss.targets} targets {targets.shape}.'
  )


def _check_batch_shapes(loss, calls, scores, targets):
  """Traces every field on seven examples too, and (but for a binary loss) on one output more: a shape
  fixed in the function (a `[5]` that matched the probe, a `one_hot(y, 3)`) fails here, naming the
  field, and not deep in a training step."""
  cases = [(np.concatenate([scores, scores[:2]]), np.concatenate([targets, targets[:2]]))]
  if loss.targets != 'binary':
    wider = np.concatenate([scores, scores[:, :1] - 0.5], axis=1)
    cases.append(
      (wider, targets if loss.targets == 'class' else np.concatenate([targets, targets[:, :1]], 1))
    )
  for s, t in cases:
    for field, call in calls.items():
      try:
        out = jax.eval_shape(call, s, t)
      except Exception as e:  # noqa: BLE001 - any failure of user code is reported by field
        raise _raised(loss, field, e, s, t) from e
      if field == 'kinks':
        _check_rows(loss, field, out, s)
      else:
        _check_shape(loss, field, out, s.shape if field == 'score_grad' else s.shape[:1], s)


def _check_shape(loss, field, out, shape, scores):
  """Raises naming `field` of `loss` when its output `out` is not of `shape` for `scores`."""
  if out.shape != shape:
    raise ValueError(
      f'Loss {loss.name!r}: field {field!r} must return shape {list(shape)} for scores of shape '
      f'{list(scores.shape)}, got {list(out.shape)}.'
    )


def _check_rows(loss, field, out, scores):
  """Raises naming `field` of `loss` when its output `out` has not one row per example: a kink is told
  example by example (a row of weight 0 has none), so `[N]`, `[N, C]` or `[N, ...]` for `N` examples."""
  if not out.shape or out.shape[0] != scores.shape[0]:
    raise ValueError(
      f'Loss {loss.name!r}: field {field!r} must return one row per example ([{scores.shape[0]}] or '
      f'[{scores.shape[0]}, ...]) for scores of shape {list(scores.shape)}, got {list(out.shape)}.'
    )
