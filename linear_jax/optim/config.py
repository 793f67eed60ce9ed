"""The configuration of a training run: `TrainConfig`, its checks, and its compiled-program part.

`TrainConfig` holds every choice of a run (the flags of `experiments/train.py`).
`StepConfig` holds only the fields that change the shape of the compiled
step (the loss, the optimizer, the schedule, the batch size, ...): it is
hashable and is what `jax.jit` receives as a static argument. The other
fields are either arrays at run time (`step.HParams`: learning rate,
regularization, the loss's hyperparameters, momentum) or read by the host
loop (seed, patience, tolerances), so changing them never recompiles.

This module sits low in the package: `step`, `parallel`, `stream`,
`solvers` and `train` read it without importing each other.
"""

from collections.abc import Mapping
import dataclasses
import json
import math
import types
import typing

import numpy as np

from linear_jax.maths import grad_sources
from linear_jax.maths import losses
from linear_jax.maths import validation
from linear_jax.optim import convergence

OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam', 'lbfgs')  # lbfgs: see solvers.py
SCHEDULES = ('constant', 'step', 'exponential', 'inverse_time', 'cosine', 'adaptive')
DTYPES = ('float32', 'float64')
# The fields that hold real numbers: each must be finite and representable in the training dtype.
REAL_FIELDS = (
  'learning_rate',
  'reg',
  'momentum',
  'decay_rate',
  'decay_epochs',
  'tol',
  'init_scale',
  'explode_factor',
)
PARALLEL = ('none', 'shard_map', 'pmap')
AUTO = 'auto'  # learning_rate: derived from the problem at the start and after epoch 1 (optim/step_size.py)


def _field(default=None, help_text='', group=None, factory=None, **more):
  """A field with its help (and `choices`, `flag`, ...) in its metadata: experiments/common.py makes its flag.

  `group` is the heading of `--help` the flag goes under (`model`, `optimization`, `data`, `run`).
  """
  metadata = {'help': help_text, **({'group': group} if group else {}), **more}
  if factory is not None:
    return dataclasses.field(default_factory=factory, metadata=metadata)
  return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Every choice of a training run; the flags of `experiments/train.py`.

  Each field's metadata holds the help of its flag (and its `choices`); the bounds are `validate()`'s.
  """

  loss: str = _field(  # a registered name, or FILE.py:NAME / package.module:NAME
    'softmax',
    f'Loss of the scores: {", ".join(sorted(losses.LOSSES))}; or a Loss record in your own file, '
    'FILE.py:NAME, or module, package.module:NAME (this runs that file).',
    'model',
  )
  loss_hparams: Mapping[str, float] = _field(
    help_text='Hyperparameters of the loss, NAME=VALUE,... (e.g. delta=0.5); defaults for the rest.',
    group='model',
    factory=dict,
  )
  penalty: str = _field('l2', 'Penalty on W (never on the bias).', 'model', choices=tuple(losses.PENALTIES))
  reg: float = _field(1e-4, 'Regularization strength, >= 0.', 'model')
  optimizer: str = _field(
    'sgd', 'optax optimizer; lbfgs: full-batch L-BFGS to --tol (smooth losses).', choices=OPTIMIZERS
  )
  learning_rate: float | str = _field(  # 'auto': derived from the problem (optim/step_size.py)
    0.1,
    "Base learning rate, > 0; 'auto': the step gradient descent is stable at for this problem's "
    'curvature, measured at the start and after the first epoch (docs/training.md).',
    auto=True,
  )
  momentum: float = _field(0.9, 'Momentum of the momentum and nesterov optimizers, in [0, 1).')
  schedule: str = _field(
    'constant',
    "Learning-rate schedule; adaptive: the rate is halved (scikit-learn's divides it by 5) each time the "
    'convergence test sees no progress, and the run has converged at the next plateau after the third.',
    choices=SCHEDULES,
  )
  decay_rate: float = _field(0.5, 'step / exponential / inverse_time: factor per decay period.')
  decay_epochs: float = _field(10.0, 'step / exponential / inverse_time: epochs per decay period.')
  batch_size: int = _field(64, 'Mini-batch size, > 0 (see --full_batch).')  # 0: full batch
  epochs: int = _field(  # the most epochs (--max_epochs); L-BFGS: the most iterations
    30, 'The most passes over the training data, > 0 (L-BFGS: iterations).'
  )
  tol: float | None = _field(  # None: convergence.DEFAULT_TOL; L-BFGS always stops on ‖∇f‖_∞ ≤ tol
    None,
    'Convergence tolerance, > 0: relative decrease of the training objective (--tol_on=objective; '
    'default 1e-3, 1e-4 with --schedule=adaptive) or the largest gradient entry (--tol_on=grad_norm, '
    "and always for --optimizer=lbfgs; default 1e-4; for the squared error, times the targets' "
    'standard deviation where they are not standardized), as in scikit-learn.',
  )
  n_iter_no_change: int = _field(
    5,
    'Epochs in a row without a decrease of --tol that stop the run (--tol_on=objective) or halve the '
    'rate (--schedule=adaptive), > 0.',
  )
  # 'objective', 'grad_norm' or 'none': every one of `epochs`, the default from Python, so a
  # configuration means the same run it always did; the command line's default is 'objective'.
  tol_on: str = _field('none', 'What --tol tests; none: run all --max_epochs.', choices=convergence.TOL_ON)
  grad: str = _field('analytic', 'Gradient source.', 'model', choices=grad_sources.GRAD_SOURCES)
  bias_trick: bool = _field(False, 'Fold b into W and append the constant-1 feature.', 'model')
  init_scale: float = _field(1e-3, 'Standard deviation of the initial weights, >= 0.', 'model')
  patience: int = _field(  # counted in evaluations: every --eval_every epochs
    0, 'Early stopping: evaluations (every --eval_every epochs) without validation gain, >= 0 (0: off).'
  )
  explode_factor: float = _field(  # a safety limit of the library; no command needs to change it
    1e4, 'Training stops as diverged when the loss exceeds this factor times its start.', flag=False
  )
  seed: int = _field(0, 'Seed of every random draw.', 'run')
  dtype: str = _field('float32', 'Training precision.', 'run', choices=DTYPES)
  parallel: str = _field('none', 'Data parallelism over devices.', 'run', choices=PARALLEL)
  num_devices: int = _field(0, 'Devices to use with --parallel, >= 0 (0: all).', 'run')
  eval_every: int = _field(  # the last epoch is always evaluated
    1,
    'Epochs between evaluations of the training and validation splits (the last epoch is always '
    'evaluated), > 0; every epoch also records the loss its training pass measured.',
    'run',
  )
  stream: bool = _field(  # automatic when the split does not fit in memory
    False,
    'Train by reading the training split from the file in blocks instead of holding it. With an .npy or '
    'an uncompressed .npz the splits are then contiguous row ranges of the file (training, validation, '
    'test; --seed does not shuffle them), so its rows should be in random order.',
    'data',
  )
  block_rows: int = _field(
    0,
    'Streaming: rows per block read from the file, >= 0 (0: about 32 MiB); a multiple of the batch for '
    'SGD, and of the device count for full passes with --parallel=shard_map.',
    'run',
  )

  def __post_init__(self):
    if not isinstance(self.loss_hparams, Mapping):
      raise ValueError(f'loss_hparams must be a mapping of names to numbers, got {self.loss_hparams!r}.')
    object.__setattr__(self, 'loss_hparams', dict(sorted(dict(self.loss_hparams).items())))

  def __hash__(self):  # loss_hparams is a dict; a config can still key a dict or a cache
    return hash(json.dumps(dataclasses.asdict(self), sort_keys=True, default=str))

  def structure(self):
    """The `StepConfig` of this run: only the fields that shape a compiled program.

    A schedule's settings count only for the schedules that read them (the epoch count for
    `cosine`; the decay for `step`, `exponential` and `inverse_time`), so runs that differ only in
    `epochs` share one program.
    """
    fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(StepConfig)}
    default = StepConfig()
    if self.schedule != 'cosine':
      fields['epochs'] = default.epochs
    if self.schedule not in ('step', 'exponential', 'inverse_time'):
      fields.update(decay_rate=default.decay_rate, decay_epochs=default.decay_epochs)
    return StepConfig(**fields)

  @property
  def loss_record(self):
    """The `losses.Loss` that `loss` names."""
    return losses.get_loss(self.loss)

  @property
  def own_loss(self):
    """Whether the run's loss is not the library's own: a loss file's, or one registered by hand."""
    return not losses.is_builtin(self.loss_record)

  @property
  def own_gradient(self):
    """Whether the run trains with a hand-derived gradient not the library's: the `score_grad` of a loss
    file (or of a loss registered by hand) under `grad='analytic'` or `'custom_vjp'`."""
    return self.grad != 'autodiff' and self.own_loss

  def resolved_loss_hparams(self):
    """Every hyperparameter of the loss: the given values, defaults for the rest."""
    return self.loss_record.resolve_hparams(self.loss_hparams)

  def validate(self):
    """Raises a `ValueError` naming the first bad field."""
    if not isinstance(self.loss, str):
      raise ValueError(
        'TrainConfig.loss is a name (register a Loss record with linear_jax.register_loss), '
        f'got {self.loss!r}.'
      )
    self._check_types()
    self.resolved_loss_hparams()
    validation.check_name('penalty', self.penalty, losses.PENALTIES)
    validation.check_name('optimizer', self.optimizer, OPTIMIZERS)
    validation.check_name('schedule', self.schedule, SCHEDULES)
    validation.check_name('grad', self.grad, grad_sources.GRAD_SOURCES)
    validation.check_name('dtype', self.dtype, DTYPES)
    validation.check_name('parallel', self.parallel, PARALLEL)
    validation.check_name('tol_on', self.tol_on, convergence.TOL_ON)
    positive = ('learning_rate', 'epochs', 'decay_epochs', 'explode_factor', 'eval_every', 'n_iter_no_change')
    if self.tol is not None and not self.tol > 0:
      raise ValueError(f'tol must be > 0, got {self.tol}.')
    if self.learning_rate != AUTO and isinstance(self.learning_rate, str):
      raise ValueError(f"learning_rate must be a number > 0 or 'auto', got {self.learning_rate!r}.")
    for name in positive:
      if name == 'learning_rate' and self.learning_rate == AUTO:
        continue
      if not getattr(self, name) > 0:
        raise ValueError(f'{name} must be > 0, got {getattr(self, name)}.')
    for name in ('reg', 'batch_size', 'patience', 'init_scale', 'num_devices', 'block_rows'):
      if not getattr(self, name) >= 0:
        raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}.')
    if not self.explode_factor > 1:  # at or below 1, a run that does not improve would count as diverged
      raise ValueError(
        f'explode_factor must be > 1 (a multiple of the starting loss), got {self.explode_factor}.'
      )
    if not 0 <= self.momentum < 1:
      raise ValueError(f'momentum must be in [0, 1), got {self.momentum}.')
    if not 0 < self.decay_rate <= 1:
      raise ValueError(f'decay_rate must be in (0, 1], got {self.decay_rate}.')
    validation.check_seed('seed', self.seed)
    self._check_representable()
    return self

  def _check_types(self):
    """Raises a `ValueError` for a field of another type than its annotation: `stream='no'` would
    stream (a non-empty string is true), `epochs=2.5` fail inside a compiled program."""
    for f in dataclasses.fields(self):
      value, kinds = getattr(self, f.name), _kinds(f.type)
      if value is None and type(None) in kinds or isinstance(value, str) and str in kinds:
        continue
      ok = (
        (bool in kinds and isinstance(value, (bool, np.bool_)))
        or (int in kinds and validation.is_number(value) and _is_integer(value))
        or (float in kinds and validation.is_number(value))
        or (Mapping in kinds and all(validation.is_number(v) for v in value.values()))
      )
      if not ok:
        want = ' or '.join(_KIND_WORDS.get(k, k.__name__) for k in kinds)
        raise ValueError(f'{f.name} must be {want}, got {value!r} ({type(value).__name__}).')

  def _check_representable(self):
    """Raises a `ValueError` for a number the training dtype cannot hold (`check_representable`)."""
    for name, value in [*((n, getattr(self, n)) for n in REAL_FIELDS), *self.loss_hparams.items()]:
      if name == 'momentum' and self.optimizer not in ('momentum', 'nesterov'):
        continue  # read by those two alone (and held to [0, 1) by `validate`)
      if value is not None and value != AUTO:
        check_representable(name, value, self.dtype)


def check_representable(name, value, dtype):
  """Raises a `ValueError` for a number `value` (of the hyperparameter `name`) that is infinite, or that
  vanishes or overflows in `dtype`: a learning rate of 1e-50 passes `> 0` but is 0 in float32, and the
  run would learn nothing; a momentum of 0.999999999 passes `< 1` but is 1 there, and nothing decays."""
  dtype = np.dtype(dtype)
  if not math.isfinite(value):
    raise ValueError(f'{name} must be a finite number, got {value}.')
  with np.errstate(over='ignore', under='ignore'):
    cast = dtype.type(value)
  if not np.isfinite(cast):
    raise ValueError(f'{name}={value:g} overflows {dtype.name}, the training dtype (--dtype).')
  if value != 0 and cast == 0:
    raise ValueError(
      f'{name}={value:g} rounds to 0 in {dtype.name}, the training dtype (--dtype), so it would do '
      f'nothing; the smallest positive {dtype.name} is {np.finfo(dtype).smallest_subnormal:g}.'
    )
  if name == 'momentum' and value < 1 <= cast:
    raise ValueError(
      f'momentum={value!r} rounds to 1 in {dtype.name}, the training dtype (--dtype): the velocity would '
      f'never decay; the largest momentum below 1 there is {float(np.nextafter(dtype.type(1), 0))!r}.'
    )


# The run `python -m experiments.train` describes when no flag is given, and the one source of the
# flags' defaults (experiments/common.py reads every default from here or from `TrainConfig()`).
# It differs from `TrainConfig()` in six fields:
# - its step size is derived from the problem (`learning_rate='auto'`, optim/step_size.py) and
#   halved at each plateau of the objective (`schedule='adaptive'`, with scikit-learn's
#   `MLPClassifier` patience `n_iter_no_change=10` and tolerance 1e-4): a constant mini-batch step
#   left the objective 2% (softmax) to 14% (multiclass SVM) above its optimum on digits, and 1e-3
#   or 5 epochs still 3-5%;
# - it trains until the full objective stops falling (`tol_on='objective'`), capped at 1,000 epochs;
# - its `reg` is near scikit-learn's `C = 1` (`reg = 1/(2·C·N)`) on a few hundred examples: at the
#   optimum, 1e-3 left breast_cancer 1.8 points behind `LogisticRegression` on a held-out file, and
#   3e-3 is within half a point of it on digits and breast_cancer (docs/optimum.md).
# `TrainConfig()` itself keeps a constant learning rate of 0.1, `tol_on='none'`, 30 epochs,
# `reg=1e-4` and `n_iter_no_change=5`, so a configuration written in Python means the run it always
# did; start from this one with `dataclasses.replace(config.COMMAND_LINE, ...)` to get the command
# line's run.
COMMAND_LINE = TrainConfig(
  learning_rate=AUTO, schedule='adaptive', n_iter_no_change=10, reg=3e-3, tol_on='objective', epochs=1000
)


def _is_integer(value):
  """Whether the number `value` is of an integer type (a Python int of any size, or an integer dtype)."""
  return isinstance(value, (int, np.integer)) or np.issubdtype(
    getattr(value, 'dtype', np.float64), np.integer
  )


_KIND_WORDS = {
  bool: 'True or False',
  int: 'a whole number (int)',
  float: 'a number',
  str: 'a string',
  type(None): 'None',
  Mapping: 'a mapping of names to numbers',
}


def _kinds(annotation):
  """The types an annotation admits: `float | None` -> `(float, NoneType)`; a mapping's is `Mapping`."""
  kinds = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
  return tuple(Mapping if typing.get_origin(k) is Mapping else k for k in kinds)


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """The fields of a `TrainConfig` that shape the compiled step: a `jax.jit` static argument.

  Hashable and compared by value, so two runs that differ only in
  hyperparameter values, seeds, patience or tolerances share one program.
  """

  loss: str = 'softmax'
  penalty: str = 'l2'
  optimizer: str = 'sgd'
  schedule: str = 'constant'
  decay_rate: float = 0.5
  decay_epochs: float = 10.0
  batch_size: int = 64
  epochs: int = 30  # the cosine schedule's length
  grad: str = 'analytic'
  bias_trick: bool = False
  dtype: str = 'float32'
  parallel: str = 'none'
  num_devices: int = 0

  @property
  def loss_record(self):
    """The `losses.Loss` that `loss` names."""
    return losses.get_loss(self.loss)
