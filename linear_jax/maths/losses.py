"""Losses of the scores: the `Loss` record, the registry of names, penalties, the objective.

A loss is a function of the scores `s = Wx + b`, so the linear layer is shared
and a hand-derived gradient needs only `dL_i/ds_i` (the chain rule through the
layer is written once, in `grads.py`). Each `Loss` record holds everything
about one loss: its per-example value, the kind of targets it takes, its
hand-derived score gradient, where its kinks are, and its hyperparameters with
their defaults. Targets come in three kinds:

* `'class'`: `[N]` integer labels in `[0, C)`, `C ≥ 2` scores per example;
* `'binary'`: `[N]` labels in `{0, 1}`, a single score per example (`C = 1`);
* `'real'`: `[N]` (`C = 1`) or `[N, C]` real targets for regression.

The seven losses of the lecture (their functions and hand-derived gradients
are in `classification.py`, `binary.py` and `regression.py`) are registered here under
their names; a user adds a loss with `register_loss(name, Loss(...))`, or
names one in a file of their own (`'my_losses.py:NAME'`,
`'package.module:NAME'`, which `loss_files.py` loads) wherever a loss name is
taken. Names are resolved to records once, by `get_loss`.
"""

from collections.abc import Callable
from collections.abc import Mapping
import dataclasses
import math
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import binary
from linear_jax.maths import classification
from linear_jax.maths import inputs
from linear_jax.maths import loss_files
from linear_jax.maths import loss_probe
from linear_jax.maths import model
from linear_jax.maths import regression
from linear_jax.maths import validation

TARGET_KINDS = validation.TARGET_KINDS
# Names a loss hyperparameter may not take: they are the training run's own and
# stand beside the loss's in sweep settings, flags and reports.
RESERVED_HPARAMS = frozenset({'learning_rate', 'reg', 'momentum', 'seed', 'penalty', 'loss', 'mask'})


@dataclasses.dataclass(frozen=True, eq=False)
class Loss:
  """Everything about one loss of the scores.

  Attributes:
    value: `(scores [N, C], targets, **hparams) -> [N]` per-example losses.
    targets: `'class'`, `'binary'` or `'real'` (see the module docstring).
    score_grad: `(scores, targets, **hparams) -> [N, C]`, the hand-derived
      `dL_i/ds_i` of each example; `None` if there is none (then the
      analytic gradient source is refused, `jax.grad` still works).
    kinks: `None` for a loss differentiable everywhere; otherwise
      `(scores, targets, **hparams) -> [N, ...]`, one row per example, whose
      entries change sign exactly where the loss has a kink. The gradient checker uses it to
      tell a kink from a wrong gradient; L-BFGS refuses such a loss.
    hparams: each hyperparameter's name and default value, passed to
      `value`, `score_grad` and `kinks` as keyword arguments.
    bounds: `(low, high)` per hyperparameter, inclusive; `(0, inf)` when not
      given.
    name: set by `register_loss`; used in messages and reports.

  Records compare and hash by identity, so a record can be a static argument
  of `jax.jit`.
  """

  value: Callable
  targets: str
  score_grad: Callable | None = None
  kinks: Callable | None = None
  hparams: Mapping[str, float] = dataclasses.field(default_factory=dict)
  bounds: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
  name: str = 'unnamed loss'

  def __post_init__(self):
    where = f'Loss {self.name!r}'
    for field in ('value', 'score_grad', 'kinks'):
      fn = getattr(self, field)
      if not (callable(fn) or (fn is None and field != 'value')):
        raise ValueError(f'{where}: field {field!r} must be a function, got {type(fn).__name__}.')
    if self.targets not in TARGET_KINDS:
      raise ValueError(
        f"{where}: field 'targets' must be one of {', '.join(TARGET_KINDS)}, got {self.targets!r}."
      )
    if not isinstance(self.hparams, Mapping) or not isinstance(self.bounds, Mapping):
      raise ValueError(f"{where}: fields 'hparams' and 'bounds' must be mappings (dicts).")
    for hp in self.hparams:
      if not (isinstance(hp, str) and hp.isidentifier()) or hp in RESERVED_HPARAMS:
        raise ValueError(
          f'{where}: hyperparameter name {hp!r} must be a Python identifier and not one of '
          f'{", ".join(sorted(RESERVED_HPARAMS))}.'
        )
    for hp, b in self.bounds.items():
      if hp not in self.hparams:
        raise ValueError(f"{where}: field 'bounds' names {hp!r}, which is not in 'hparams'.")
      if not (
        isinstance(b, tuple | list) and len(b) == 2 and all(map(validation.is_number, b)) and b[0] <= b[1]
      ):
        raise ValueError(
          f'{where}: bounds of {hp!r} must be two numbers (low, high) with low <= high, got {b!r}.'
        )
    for hp, default in self.hparams.items():  # within the bounds, once they are known to be numbers
      self.check_hparam(hp, default, what='default of hyperparameter')
    # Frozen copies, so a record cannot change under a compiled program that uses it.
    object.__setattr__(
      self, 'hparams', types.MappingProxyType({k: float(v) for k, v in self.hparams.items()})
    )
    object.__setattr__(self, 'bounds', types.MappingProxyType(dict(self.bounds)))

  @property
  def smooth(self):
    """True when the loss is differentiable everywhere (no `kinks`)."""
    return self.kinks is None

  def bound(self, hp):
    return tuple(self.bounds.get(hp, (0.0, math.inf)))

  def check_hparam(self, hp, value, what='hyperparameter'):
    """Raises unless `value` is finite and within `hp`'s bounds (skipped for tracers)."""
    v = validation.one_number(f'Loss {self.name!r}: {what} {hp!r}', value)
    if v is None:
      return
    low, high = self.bound(hp)
    if not (np.isfinite(v) and low <= v <= high):
      rng = f'>= {low:g}' if high == math.inf else f'in [{low:g}, {high:g}]'
      raise ValueError(f'Loss {self.name!r}: {what} {hp!r} must be finite and {rng}, got {v.tolist()}.')

  def resolve_hparams(self, given=None):
    """The defaults updated with `given`; unknown names and bad values raise, naming them."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(self.hparams), key=str)
    if unknown:
      has = f'has {", ".join(sorted(self.hparams))}' if self.hparams else 'has no hyperparameters'
      named = ', '.join(repr(str(u)[:40] + '…' if len(str(u)) > 40 else u) for u in unknown[:5])
      more = f' and {len(unknown) - 5} more' if len(unknown) > 5 else ''
      raise ValueError(f'Loss {self.name!r} {has}; got {named}{more}.')
    for hp, v in given.items():
      self.check_hparam(hp, v)
    return {**self.hparams, **given}


# The registry: name -> Loss. Read it through `get_loss`; add with `register_loss`.
LOSSES: dict[str, Loss] = {}


# The record each name was last registered with: programs compiled for it may still be cached, even
# after the name has left LOSSES.
_REGISTERED: dict[str, Loss] = {}
# The lecture's records (`_register_builtin`): tested with the library.
_LECTURE: set[Loss] = set()


def probe(loss: 'Loss', concrete: bool = False) -> None:
  """`loss_probe.probe(loss, concrete)`, except that the lecture's seven records, which the library's own
  tests try, are not tried again before a run (a program of its own that each run would trace, lower
  and load)."""
  if not (concrete and loss in _LECTURE):
    loss_probe.probe(loss, concrete)


def register_loss(name: str, loss: Loss, *, overwrite: bool = False) -> Loss:
  """Makes `loss` usable by `name` everywhere a loss name is taken.

  Args:
    name: the name; a taken name is refused unless `overwrite`.
    loss: a `Loss` record. It is tried once on a small problem (see `probe`).
    overwrite: replace a record already registered under `name`.

  Returns:
    The registered record (a copy of `loss` carrying `name`).
  """
  if not isinstance(name, str) or not name or name == 'all' or name.strip() != name:
    raise ValueError(f'A loss name must be a non-empty string without surrounding spaces, not {name!r}.')
  if not isinstance(loss, Loss):
    raise ValueError(f'register_loss({name!r}, ...) takes a linear_jax.Loss, got {type(loss).__name__}.')
  if name in LOSSES and not overwrite:
    raise ValueError(f'A loss called {name!r} is registered already; pass overwrite=True to replace it.')
  record = dataclasses.replace(loss, name=name)
  probe(record)
  if _REGISTERED.get(name, record) != record or LOSSES.get(name, record) != record:
    # Compiled programs are cached by the loss's name (a `config.StepConfig` field): drop them, so
    # none compiled for a record this name held before (replaced, or removed since) is ever run again.
    jax.clear_caches()
  LOSSES[name] = _REGISTERED[name] = record
  return record


def _register_builtin(name, loss):
  """The lecture's losses: tested, so registered without tracing anything at import, and never
  probed before a run (`probe`)."""
  LOSSES[name] = _REGISTERED[name] = record = dataclasses.replace(loss, name=name)
  _LECTURE.add(record)


def is_builtin(loss: 'Loss') -> bool:
  """Whether every function of `loss` is the library's own (the lecture's records, `more_losses`'), and so
  tested with it: not a loss file's, nor one written by hand, nor the library's gradient paired with a
  value of your own."""
  fns = [f for f in (loss.value, loss.score_grad, loss.kinks) if f is not None]
  return all(getattr(f, '__module__', '').startswith('linear_jax.') for f in fns)


def get_loss(loss: 'str | Loss') -> Loss:
  """The `Loss` record for `loss`: a record, a registered name, or `'FILE.py:NAME'` / `'module:NAME'`.

  A file or module is loaded once and its record registered under the text
  given, so later look-ups are a dictionary read. Errors name the loss.
  """
  if isinstance(loss, Loss):
    return loss
  if not isinstance(loss, str):
    raise ValueError(f'A loss is a name or a linear_jax.Loss, got {type(loss).__name__}.')
  if loss in LOSSES:
    return LOSSES[loss]
  if ':' not in loss:
    raise ValueError(
      f'Unknown loss {loss!r}; valid: {", ".join(sorted(LOSSES))}, or FILE.py:NAME / package.module:NAME.'
    )
  obj = loss_files.load_object(loss)
  if not isinstance(obj, Loss):
    raise ValueError(f'Loss {loss!r} is of type {type(obj).__name__}, not a linear_jax.Loss.')
  return register_loss(loss, obj)


def loss_name(loss: 'str | Loss') -> str:
  """The name a record is known by (for messages, reports and configs)."""
  return loss if isinstance(loss, str) else loss.name


# The seven losses of the lecture (`classification.py`, `binary.py`, `regression.py`), by name.
_MARGIN = {'margin': 1.0}

for _name, _record in {
  'svm': Loss(
    classification.multiclass_svm,
    'class',
    classification.multiclass_svm_score_grad,
    classification.svm_margins,
    _MARGIN,
  ),
  'softmax': Loss(
    classification.softmax_cross_entropy, 'class', classification.softmax_cross_entropy_score_grad
  ),
  'hinge': Loss(
    binary.binary_hinge,
    'binary',
    binary.binary_hinge_score_grad,
    binary.hinge_margins,
    _MARGIN,
  ),
  'logistic': Loss(binary.logistic, 'binary', binary.logistic_score_grad),
  'sigmoid_l2': Loss(binary.sigmoid_l2, 'binary', binary.sigmoid_l2_score_grad),
  'l2': Loss(regression.l2_regression, 'real', regression.l2_regression_score_grad),
  'l1': Loss(regression.l1_regression, 'real', regression.l1_regression_score_grad, regression.l1_residuals),
}.items():
  _register_builtin(_name, _record)


def l2_penalty(w: chex.Array) -> jax.Array:
  """`R(W) = Σ W²`."""
  return jnp.sum(jnp.square(w))


def l1_penalty(w: chex.Array) -> jax.Array:
  """`R(W) = Σ |W|`."""
  return jnp.sum(regression.abs_value(w))


PENALTIES = {'l2': l2_penalty, 'l1': l1_penalty}


def weighted_mean(values: chex.Array, weights: chex.Array | None = None) -> jax.Array:
  """`Σ_i w_i v_i / Σ_i w_i` of `[N]` values; the plain mean without weights.

  Weights are sample weights ≥ 0; a padding row has weight 0. Where all
  weights are 0 the mean is 0.
  """
  if weights is None:
    return jnp.mean(values)
  weights = weights.astype(values.dtype)
  # jnp.where, not a product alone, so a padded row's inf or NaN cannot leak in.
  total = jnp.sum(jnp.where(weights > 0, weights * values, 0.0))
  norm = jnp.sum(weights)
  return jnp.where(norm > 0, total / jnp.where(norm > 0, norm, 1.0), 0.0)


def objective(
  params: model.Params,
  x: chex.Array,
  targets: chex.Array,
  loss: 'str | Loss' = 'softmax',
  reg: float = 0.0,
  penalty: str = 'l2',
  mask: chex.Array | None = None,
  **loss_hparams: float,
) -> jax.Array:
  """The empirical risk `L = Σ_i w_i L_i(f(x_i, W), y_i) / Σ_i w_i + reg · R(W)`.

  Inputs are checked on the host when they are concrete arrays (shape checks
  always); inside `jit` only shapes can be checked, so data must be validated
  where it enters (`linear_jax.data.datasets` does).

  Args:
    params: `Params`; the bias is never penalized, also in bias-trick form.
    x: `[N, D]` inputs.
    targets: labels or real targets, as the loss expects.
    loss: a `Loss`, or a name `get_loss` resolves.
    reg: regularization strength ≥ 0.
    penalty: `'l2'` or `'l1'`.
    mask: optional `[N]` sample weights ≥ 0 (`w_i`; 1 for every row if not
      given). Padding rows get 0, which keeps mini-batch shapes static.
    **loss_hparams: the loss's hyperparameters (`margin=` for svm and hinge);
      the record's defaults for those not given.

  Returns:
    A scalar.
  """
  spec = get_loss(loss)
  validation.check_name('penalty', penalty, PENALTIES)
  hp = spec.resolve_hparams(loss_hparams)
  params, x, targets, mask = inputs.check_inputs(params, x, targets, spec.targets, reg=reg, mask=mask)
  return unchecked_objective(params, x, targets, spec, reg, penalty, hp, mask)


def unchecked_objective(
  params: model.Params,
  x: chex.Array,
  targets: chex.Array,
  loss: 'str | Loss' = 'softmax',
  reg: chex.Numeric = 0.0,
  penalty: str = 'l2',
  loss_hparams: dict | None = None,
  mask: chex.Array | None = None,
) -> jax.Array:
  """`objective` without the host checks: for use inside `jit`, `vmap` and `grad`.

  `loss_hparams` is a dict of the loss's hyperparameters (missing ones take
  their defaults). Validate the data where it enters instead.
  """
  spec = get_loss(loss)
  hp = spec.resolve_hparams(loss_hparams)
  per_example = spec.value(model.scores(params, x), targets, **hp)
  return weighted_mean(per_example, mask) + reg * PENALTIES[penalty](model.penalized_weights(params))
