"""The flags of the experiments, made from the config records' fields, their validators, and `--help`.

Each field of `config.TrainConfig`, `experiment.DataConfig` and `experiment.RunOptions` says its
flag's help (and choices) in its metadata; `define_fields` makes the flags from them, so a new field
is a new flag with no edit here. The records' `validate()` checks the bounds (`validate_as_field`).
"""

import atexit
from collections.abc import Mapping
import dataclasses
import gc
import importlib.util
import os
import sys
import tempfile
import types
import typing

from absl import app
from absl import flags

from linear_jax import _stack
from linear_jax.maths import losses
from linear_jax.optim import config
from linear_jax.runs import experiment

PENALTY_NAMES = tuple(losses.PENALTIES)
# Every flag that sets a `TrainConfig` field takes its default from `config.COMMAND_LINE` (the
# command line's run: converging, at most MAX_EPOCHS epochs, DEFAULT_REG), except the sweeps'
# fixed `--epochs`, which is `TrainConfig()`'s.
RUN = config.COMMAND_LINE
MAX_EPOCHS = RUN.epochs
DEFAULT_REG = RUN.reg

# The headings of `--help`, in order; a field's metadata `group` (else its record's) names one.
HEADINGS = {'data': 'Data', 'model': 'Model and loss', 'optimization': 'Optimization', 'run': 'Run'}
RECORD_GROUPS = {
  config.TrainConfig: 'optimization',
  experiment.DataConfig: 'data',
  experiment.RunOptions: 'run',
}
GROUPS = {}  # flag name -> key of HEADINGS, for every flag made here; the others go under the command's name

# The `TrainConfig` fields of each set of flags; `define_training_flags` makes the rest.
OBJECTIVE_FIELDS = ('loss', 'loss_hparams', 'penalty', 'reg', 'seed')
CONVERGENCE_FIELDS = ('tol', 'n_iter_no_change', 'tol_on')
OWN_FIELDS = OBJECTIVE_FIELDS + CONVERGENCE_FIELDS + ('stream',)  # `stream` is a data flag


def validate_as_field(name, field=None, record=None, flag_values=flags.FLAGS, alias=None, dtype=None):
  """Checks `--name` by the `validate()` of the config record whose `field` it sets: bounds said once.

  `record` is `config.TrainConfig` unless given (`experiment.DataConfig`), made with the command's
  `--dtype` and `--optimizer`; the record's message, e.g. `momentum must be in [0, 1), got 1.5.`, becomes the
  flag error `--momentum must be in [0, 1), got 1.5.` (`--max_epochs (--epochs) must ...` for a flag
  with an `alias`, which the user may have typed instead). `dtype`: what a command without `--dtype`
  computes in (gradcheck: float64), if not the record's default.
  """
  field = field or name
  shown = f'--{name}' + (f' (--{alias})' if alias else '')

  def check(value):
    # A number's check depends on the run's dtype (1e-50 is 0 in float32, not in float64) and, for a
    # momentum, on its optimizer: those flags' values, where the command has them.
    cls = record or config.TrainConfig
    given = {
      n: flag_values[n].value
      for n in ('dtype', 'optimizer')
      if cls is config.TrainConfig and n in flag_values
    }
    if dtype and cls is config.TrainConfig:
      given.setdefault('dtype', dtype)
    try:
      cls(**{**given, field: value}).validate()
    except ValueError as e:
      raise flags.ValidationError(f'{shown}{str(e).removeprefix(field)}') from e
    return True

  flags.register_validator(name, check, flag_values=flag_values)


def _kind(annotation):
  """The type of a field's values, `None` aside: `float | None` -> `float`, `Mapping[K, V]` -> `Mapping`."""
  if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
    return _kind(next(a for a in typing.get_args(annotation) if a is not type(None)))
  return typing.get_origin(annotation) or annotation


def define_fields(record, names=None, defaults=None, flag_values=flags.FLAGS, dtype=None, **overrides):
  """Defines a flag for each field of the dataclass `record` (or of those `names`), from its metadata.

  The flag is the field's name, its help `metadata['help']`, its default the field's in `defaults`
  (a `record` instance; `record()` if not given): bool -> `DEFINE_bool`, int -> `DEFINE_integer`,
  float -> `DEFINE_float`, str with `metadata['choices']` -> `DEFINE_enum`, str -> `DEFINE_string`,
  a mapping -> a `NAME=VALUE,...` list; `None` may be a default. A number is checked by the record's
  `validate()` (`validate_as_field`). Fields with `metadata['flag']` false have none.
  `overrides[field]` changes this command's flag: any of `name`, `default`, `help`, `choices`,
  `alias` (a second name) and `validate` (false: no `validate_as_field`). The flags go into
  `flag_values` (absl's `FLAGS` unless given); `dtype` is `validate_as_field`'s.
  """
  defaults = defaults if defaults is not None else record()
  for field in dataclasses.fields(record):
    if (names is not None and field.name not in names) or not field.metadata.get('flag', True):
      continue
    meta = dict(field.metadata) | overrides.get(field.name, {})
    name = meta.get('name', field.name)
    default = meta.get('default', getattr(defaults, field.name))
    kind = _kind(field.type)
    help_text = meta.get('help')
    if not help_text:
      raise ValueError(f"{record.__name__}.{field.name} says no help: give it metadata={{'help': ...}}.")
    if meta.get('auto'):
      flags.DEFINE(
        _FloatOrAuto(),
        name,
        default,
        help_text,
        flag_values=flag_values,
        serializer=flags.ArgumentSerializer(),
      )
    elif kind is bool:
      flags.DEFINE_bool(name, default, help_text, flag_values=flag_values)
    elif kind in (int, float):
      define = flags.DEFINE_integer if kind is int else flags.DEFINE_float
      define(name, default, help_text, lower_bound=meta.get('lower_bound'), flag_values=flag_values)
    elif isinstance(kind, type) and issubclass(kind, Mapping):
      flags.DEFINE_list(
        name, [f'{k}={v}' for k, v in (default or {}).items()], help_text, flag_values=flag_values
      )
    elif meta.get('choices'):
      flags.DEFINE_enum(name, default, meta['choices'], help_text, flag_values=flag_values)
    else:
      flags.DEFINE_string(name, default, help_text, flag_values=flag_values)
    GROUPS[name] = meta.get('group', RECORD_GROUPS.get(record, 'run'))
    if meta.get('alias'):
      flags.DEFINE_alias(meta['alias'], name, flag_values=flag_values)
      GROUPS[meta['alias']] = GROUPS[name]
      flags.register_validator(name, _one_of(name, meta['alias'], flag_values), flag_values=flag_values)
    if (
      (kind in (int, float) or meta.get('auto'))
      and meta.get('validate', True)
      and hasattr(record, 'validate')
    ):
      validate_as_field(name, field.name, record, flag_values, alias=meta.get('alias'), dtype=dtype)


class _FloatOrAuto(flags.ArgumentParser):
  """A number, or `auto` (a field with `metadata['auto']`: `--learning_rate`)."""

  def parse(self, argument):
    if isinstance(argument, str) and argument.strip().lower() == config.AUTO:
      return config.AUTO
    try:
      return float(argument)
    except (TypeError, ValueError):
      raise ValueError(f"a number or 'auto', got {argument!r}") from None

  def flag_type(self):
    return 'float or auto'


# Flags that name a file or folder: `~` is expanded in them (absl leaves `--workdir=~/x` as it is).
PATH_FLAGS = (
  'workdir',
  'data_dir',
  'data_path',
  'labels_path',
  'test_path',
  'test_labels_path',
  'json_out',
  'compilation_cache',
)


def expand_path(value):
  """`value` with a leading `~` expanded (`None` and `''` as they are)."""
  return os.path.expanduser(value) if isinstance(value, str) and value else value


def error_line(e):
  """The one line a command prints for a `ValueError` or `OSError` it cannot go on after.

  An `OSError` names its file and the system's reason (`report.html: Permission denied`).
  """
  if isinstance(e, OSError) and e.strerror:
    return f'Error: {e.filename}: {e.strerror}.' if e.filename else f'Error: {e.strerror}.'
  return f'Error: {e}'


def record_from_flags(record, f):
  """The `record` (a dataclass) the parsed flags `f` describe: each field from the flag of its name.

  A path flag (`PATH_FLAGS`) has its `~` expanded.
  """
  return record(
    **{
      field.name: expand_path(f[field.name].value) if field.name in PATH_FLAGS else f[field.name].value
      for field in dataclasses.fields(record)
      if field.name in f
    }
  )


def define_objective_flags(allow_all=False, dtype=None):
  """`--loss`, `--loss_hparams`, `--margin`, `--penalty`, `--reg`, `--seed`; `all` allowed if asked.

  `dtype`: what the command computes in, when it has no `--dtype` flag and it is not float32.
  """
  everything = {}
  if allow_all:
    loss_help = config.TrainConfig.__dataclass_fields__['loss'].metadata['help']
    everything = {
      'loss': {'default': 'all', 'help': loss_help.replace(';', ', all;', 1)},
      'penalty': {'default': 'all', 'choices': PENALTY_NAMES + ('all',)},
      'reg': {'default': 0.1},
    }
  define_fields(config.TrainConfig, OBJECTIVE_FIELDS, RUN, dtype=dtype, **everything)
  flags.DEFINE_float(
    'margin', None, 'Margin Δ of the losses that have one (svm, hinge, ...); their default if unset.'
  )
  GROUPS['margin'] = 'model'

  def loss_and_hparams_ok(f):
    names = loss_names(f['loss'])
    given = parse_loss_hparams(f['loss_hparams'], f['margin'])
    for name in names:
      spec = losses.get_loss(name)
      own = {k: v for k, v in given.items() if k in spec.hparams} if len(names) > 1 else given
      try:
        spec.resolve_hparams(own)
      except ValueError as e:
        raise flags.ValidationError(f'--loss={f["loss"]}: {e}') from e
    if len(names) > 1:
      unused = set(given) - {k for n in names for k in losses.get_loss(n).hparams}
      if unused:
        raise flags.ValidationError(
          f'No loss of --loss={f["loss"]} has the hyperparameter(s) {", ".join(sorted(unused))}.'
        )
    return True

  flags.register_multi_flags_validator(['loss', 'loss_hparams', 'margin'], loss_and_hparams_ok)


def loss_names(text):
  """The losses `--loss` names: every registered one for `all`; a file or module is loaded here."""
  if text == 'all':
    return tuple(sorted(losses.LOSSES))
  try:
    losses.get_loss(text)
  except ValueError as e:
    raise flags.ValidationError(str(e)) from e
  return (text,)


def parse_loss_hparams(items, margin=None):
  """`['delta=0.5']` (and `--margin`) -> `{'delta': 0.5}`, or a `flags.ValidationError` naming the item."""
  out = {}
  for item in items or ():
    name, eq, value = item.partition('=')
    try:
      if not eq or not name.strip():
        raise ValueError
      number = float(value)
    except ValueError as e:
      raise flags.ValidationError(f'--loss_hparams: {item!r} is not NAME=NUMBER.') from e
    if name.strip() in out:  # the last would win, silently
      raise flags.ValidationError(f'--loss_hparams gives {name.strip()!r} twice; give it once.')
    out[name.strip()] = number
  if margin is not None:
    if 'margin' in out and out['margin'] != margin:
      raise flags.ValidationError('--margin and --loss_hparams=margin=... disagree; give one.')
    out['margin'] = float(margin)
  return out


def loss_hparams_for(f, loss):
  """The hyperparameters the flags give for `loss` (with `--loss=all`: those it has)."""
  given = parse_loss_hparams(f.loss_hparams, f.margin)
  spec = losses.get_loss(loss)
  return {k: v for k, v in given.items() if k in spec.hparams} if f.loss == 'all' else given


def parse_float_list(name, text):
  """`'1e-3,1e-2'` -> `[0.001, 0.01]`, or a `flags.ValidationError` naming the flag."""
  try:
    values = [float(t) for t in text.split(',') if t.strip()]
  except ValueError as e:
    raise flags.ValidationError(f'--{name}: {text!r} is not a comma-separated list of numbers.') from e
  if not values:
    raise flags.ValidationError(f'--{name} is empty.')
  repeated = _repeated(name, text, values)
  if repeated:
    raise flags.ValidationError(repeated)
  return values


def _repeated(name, text, values):
  """The refusal of flag `name` (`text`, parsed to `values`) when a value comes twice, or `None`: each
  value of a sweep's list is one point of its grid."""
  seen = set()
  for v in values:
    if v in seen:
      return f'--{name} repeats {v:g} in {text!r}: each value is one point of the grid.'
    seen.add(v)
  return None


class NumberListParser(flags.ArgumentParser):
  """Comma-separated numbers within a bound, `'1e-3,1e-2'` -> `[0.001, 0.01]`; what `flags.DEFINE_list` reads.

  `bound` is a `sweep.Bound` (or `None`: any number): the library's rule, so
  the flag refuses exactly what the library would. A bad list is a one-line
  flag error that names the flag.
  """

  syntactic_help = 'a comma-separated list of numbers'

  def __init__(self, name, bound=None):
    self.name, self.bound = name, bound
    self.kind = bound.kind if bound is not None else float

  def flag_type(self):
    return f'list of {self.kind.__name__}'

  def _refusal(self, text):
    if self.kind is int:
      return f'--{self.name} must be comma-separated integers {self.bound.describe()}, got {text!r}.'
    return f'--{self.name} must hold only values {self.bound.describe()}, got {text!r}.'

  def parse(self, argument):
    if isinstance(argument, list):
      return argument
    text = str(argument)
    try:
      values = [self.kind(t.strip()) for t in text.split(',') if t.strip()]
    except ValueError as e:
      if self.kind is int:
        raise ValueError(self._refusal(text)) from e
      raise ValueError(f'--{self.name}: {text!r} is not a comma-separated list of numbers.') from e
    if not values:
      raise ValueError(f'--{self.name} is empty.')
    if self.bound is not None and not all(self.bound.admits(v) for v in values):
      raise ValueError(self._refusal(text))
    repeated = _repeated(self.name, text, values)  # a repeat would train a model twice, break its pictures
    if repeated:
      raise ValueError(repeated)
    return values


def define_number_list(name, default, help_text, bound=None):
  """A flag of comma-separated numbers within `bound` (the syntax of `flags.DEFINE_list`): a list of numbers.

  `bound` is a `sweep.Bound`, the library's rule for the values; its words
  are added to `help_text`.
  """
  if bound is not None:
    kind = 'integers ' if bound.kind is int else ''
    help_text = f'{help_text} Values: {kind}{bound.describe()}.'
  flags.DEFINE(
    NumberListParser(name, bound),
    name,
    default,
    help_text,
    serializer=flags.CsvListSerializer(','),
  )


def define_data_flags():
  """Which dataset, where its files are, how it is split and preprocessed: `DataConfig`, and `--stream`."""
  define_fields(experiment.DataConfig)
  define_fields(config.TrainConfig, ('stream',), RUN)


# The target kind of each dataset whose kind is known before loading it.
KNOWN_KINDS = {
  'digits': ('class', 10),
  'breast_cancer': ('class', 2),
  'diabetes': ('real', None),
  'linreg': ('real', None),
  'binary2d': ('class', 2),
}


# The step-size flags of the first-order optimizers: given with --optimizer=lbfgs, they would be ignored.
LBFGS_UNREAD = ('learning_rate', 'momentum', 'schedule', 'decay_rate', 'decay_epochs')
# The optimizers that read --momentum, and the schedules that read --decay_rate and --decay_epochs.
MOMENTUM_OPTIMIZERS = ('momentum', 'nesterov')
DECAY_SCHEDULES = ('step', 'exponential', 'inverse_time')


def _given(name):
  """Whether flag `name` exists and was given on the command line (not left at its default)."""
  return name in flags.FLAGS and flags.FLAGS[name].present


def define_training_flags(max_epochs=False):
  """Optimizer, schedule, batches, gradient source and the rest of a training run: every other field.

  With `max_epochs`, the epoch count is `--max_epochs` (a cap: the run stops
  when it has converged, see `define_convergence_flags`), `--epochs` its alias;
  without, `--epochs` is a fixed count, `TrainConfig()`'s.
  """
  rest = [f.name for f in dataclasses.fields(config.TrainConfig) if f.name not in OWN_FIELDS]
  epochs = {'name': 'max_epochs', 'alias': 'epochs'}
  if not max_epochs:
    epochs = {'default': config.TrainConfig().epochs, 'help': 'Passes over the training data, > 0.'}
  # 0 is full batch in TrainConfig; the flag for it is --full_batch.
  # The sweeps train every setting a fixed count: a constant rate unless a schedule is asked for.
  schedule = {} if max_epochs else {'default': 'constant', 'choices': config.SCHEDULES[:-1]}
  define_fields(
    config.TrainConfig, rest, RUN, epochs=epochs, batch_size={'validate': False}, schedule=schedule
  )
  flags.register_validator('batch_size', lambda v: v > 0, message='--batch_size must be > 0.')
  flags.DEFINE_bool('full_batch', False, 'Full-batch gradient descent: one step per epoch on all examples.')
  flags.DEFINE_string('coordinator_address', None, 'Multi-host: host:port of process 0.')
  flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes.', lower_bound=1)
  flags.DEFINE_integer(
    'process_id', None, 'Multi-host: this process, in [0, --num_processes).', lower_bound=0
  )
  flags.DEFINE_bool(
    'distributed', False, 'Multi-host from the cluster environment JAX detects (Slurm, MPI, TPU).'
  )
  GROUPS['full_batch'] = 'optimization'
  GROUPS.update(dict.fromkeys(('coordinator_address', 'num_processes', 'process_id', 'distributed'), 'run'))
  flags.register_multi_flags_validator(
    ['coordinator_address', 'num_processes', 'process_id'],
    lambda f: len({v is None for v in f.values()}) == 1,
    message='--coordinator_address, --num_processes and --process_id go together.',
  )
  flags.register_multi_flags_validator(
    ['num_processes', 'process_id'],
    lambda f: f['process_id'] is None or f['process_id'] < f['num_processes'],
    message='--process_id must be < --num_processes.',
  )
  flags.register_multi_flags_validator(
    ['num_devices', 'parallel'],
    lambda f: not _given('num_devices') or f['parallel'] != 'none',
    message='--num_devices is the devices --parallel=shard_map or pmap splits the batches over; give '
    '--parallel, or drop --num_devices.',
  )

  def loss_fits_dataset(f):
    known = KNOWN_KINDS.get(f['dataset'])
    if f['dataset'] == 'blobs':
      known = ('class', f['num_classes'])
    if known is None:
      return True  # files: checked once loaded, before any compile
    from linear_jax.data import records  # pylint: disable=import-outside-toplevel

    try:
      targets = losses.get_loss(f['loss']).targets
    except ValueError:
      return True  # the --loss validator names the problem
    why = records.fits_loss(known[1], known[0], targets)
    if why:
      raise flags.ValidationError(f'--loss={f["loss"]} does not fit --dataset={f["dataset"]}: it {why}.')
    return True

  flags.register_multi_flags_validator(['loss', 'dataset', 'num_classes'], loss_fits_dataset)

  def lbfgs_fits(f):
    if f['optimizer'] != 'lbfgs':
      return True
    from linear_jax.solvers import lbfgs as solvers  # pylint: disable=import-outside-toplevel

    try:
      solvers.check_smooth(f['loss'], f['penalty'], f['reg'])
    except ValueError as e:
      raise flags.ValidationError(str(e)) from e
    if _given('batch_size'):
      raise flags.ValidationError(
        '--optimizer=lbfgs is full-batch (its line search needs the exact objective); drop --batch_size.'
      )
    unread = [f'--{n}' for n in LBFGS_UNREAD if _given(n)]
    if unread:
      raise flags.ValidationError(
        f'--optimizer=lbfgs chooses each step by its line search and reads no {", ".join(unread)}; '
        f'drop {"it" if len(unread) == 1 else "them"}.'
      )
    return True

  flags.register_multi_flags_validator(
    ['optimizer', 'loss', 'penalty', 'reg', 'batch_size', *LBFGS_UNREAD], lbfgs_fits
  )
  flags.register_multi_flags_validator(
    ['optimizer', 'schedule', 'full_batch', *LBFGS_UNREAD], _read_by_the_run
  )


def _read_by_the_run(f):
  """Refuses a flag the chosen first-order optimizer or schedule would never read (`lbfgs_fits` names
  what L-BFGS does not), and `--full_batch` beside `--batch_size`."""
  if f['full_batch'] and _given('batch_size'):
    raise flags.ValidationError('--full_batch takes every example in one step: drop --batch_size.')
  if f['optimizer'] == 'lbfgs':
    return True
  if _given('momentum') and f['optimizer'] not in MOMENTUM_OPTIMIZERS:
    raise flags.ValidationError(
      f'--optimizer={f["optimizer"]} reads no --momentum (--optimizer=momentum and nesterov do); drop it.'
    )
  unread = [f'--{n}' for n in ('decay_rate', 'decay_epochs') if _given(n)]
  if unread and f['schedule'] not in DECAY_SCHEDULES:
    raise flags.ValidationError(
      f'--schedule={f["schedule"]} reads no {", ".join(unread)} (--schedule={"/".join(DECAY_SCHEDULES)} '
      f'do); drop {"it" if len(unread) == 1 else "them"}.'
    )
  return True


def define_convergence_flags(tol_only=False):
  """`--tol`, `--n_iter_no_change`, `--tol_on`: when a training run has converged (convergence.py).

  With `tol_only`, just `--tol` (the sweeps run a fixed count; their L-BFGS paths stop on --tol).
  """
  define_fields(config.TrainConfig, CONVERGENCE_FIELDS[:1] if tol_only else CONVERGENCE_FIELDS, RUN)
  if not tol_only:
    flags.register_multi_flags_validator(['tol_on', 'optimizer', 'schedule'], _convergence_flags_are_read)
    flags.register_multi_flags_validator(['optimizer', *LBFGS_STOPS_UNREAD], _lbfgs_stops_on_its_gradient)


# What an L-BFGS run never reads: it stops on --tol (its gradient's largest entry) or after --max_epochs
# iterations, and evaluates its model once, at the last.
LBFGS_STOPS_UNREAD = ('tol_on', 'patience', 'eval_every')


def _lbfgs_stops_on_its_gradient(f):
  unread = [f'--{n}' for n in LBFGS_STOPS_UNREAD if _given(n)]
  if f['optimizer'] == 'lbfgs' and unread:
    raise flags.ValidationError(
      '--optimizer=lbfgs stops when its largest gradient entry is within --tol, or after --max_epochs '
      f'iterations, and evaluates its model once, at the last: it reads no {", ".join(unread)}; '
      f'drop {"it" if len(unread) == 1 else "them"}.'
    )
  return True


def _convergence_flags_are_read(f):
  """Refuses `--tol` where no test reads it (`--tol_on=none`, not L-BFGS: the adaptive schedule then
  uses its own), and `--n_iter_no_change` where nothing counts epochs without change: the objective's
  stopping test does, and the adaptive schedule's divisions of the rate, whatever `--tol_on`."""
  if _given('tol') and f['tol_on'] == 'none' and f['optimizer'] != 'lbfgs':
    raise flags.ValidationError(
      '--tol_on=none tests no tolerance (--tol_on=objective or grad_norm, or --optimizer=lbfgs, does); '
      'drop --tol.'
    )
  if not _given('n_iter_no_change'):
    return True
  if f['optimizer'] == 'lbfgs':
    why = '--optimizer=lbfgs'
  elif f['tol_on'] != 'objective' and f['schedule'] != 'adaptive':
    why = f'--tol_on={f["tol_on"]} with --schedule={f["schedule"]}'
  else:
    return True
  raise flags.ValidationError(
    f'{why} counts no epochs without change (--tol_on=objective and --schedule=adaptive do); '
    'drop --n_iter_no_change.'
  )


def define_run_flags():
  """`experiment.RunOptions`: f*, refit, resume, the checkpoint interval, the pictures."""
  define_fields(experiment.RunOptions)


def train_config(f):
  """The `TrainConfig` the parsed flags describe: each field from the flag of its name, where there is one.

  Three fields are said otherwise on the command line: `loss_hparams` (`--loss_hparams=NAME=VALUE,...`
  and `--margin`), `batch_size` (0, a full batch, is `--full_batch`) and `grad` (`gradient_source`).
  A field without a flag in this experiment (`--tol_on` in the sweeps, `explode_factor` everywhere)
  keeps its default.
  """

  said_otherwise = ('loss_hparams', 'batch_size', 'grad')
  fields = [
    field.name for field in dataclasses.fields(config.TrainConfig) if field.name not in said_otherwise
  ]
  return config.TrainConfig(
    **{name: f[name].value for name in fields if name in f},
    loss_hparams=loss_hparams_for(f, f.loss),
    batch_size=0 if f.full_batch else f.batch_size,
    grad=gradient_source(f),
  )


def gradient_source(f):
  """`--grad`, or `autodiff` when the flag was not given and the loss has no hand-derived gradient.

  A loss written in the user's own file without a `score_grad` then trains with `jax.grad`'s
  gradient, and the run says so once; `--grad=analytic` given for such a loss is still refused.
  """
  if f['grad'].present or f.grad != 'analytic':
    return f.grad
  try:
    has_own = losses.get_loss(f.loss).score_grad is not None
  except ValueError:
    return f.grad  # the --loss validator names the problem
  if has_own:
    return f.grad
  print(f'--loss={f.loss} has no hand-derived score_grad: training with autodiff (--grad=autodiff).')
  return 'autodiff'


def data_config(f):
  """The `experiment.DataConfig` the parsed data flags describe."""
  return record_from_flags(experiment.DataConfig, f)


def run_options(f):
  """The `experiment.RunOptions` the parsed run flags describe."""
  return record_from_flags(experiment.RunOptions, f)


def load_dataset(f):
  """Loads and prepares the dataset the flags name; errors name the file."""
  return experiment.load_dataset(
    data_config(f),
    seed=f.seed,
    dtype=getattr(f, 'dtype', 'float32'),  # experiments without the training flags train in float32
    stream=f.stream,
    progress=progress_line,
    # How a file's targets are read: whole numbers are real targets for a regression loss.
    targets=losses.get_loss(f.loss).targets if 'loss' in f else None,
  )


def progress_line(message):
  """Memory and progress of a large load, on stderr (stdout stays the run's results)."""
  import sys  # pylint: disable=import-outside-toplevel

  print(message, file=sys.stderr, flush=True)


def prepare_workdir(path, command, elsewhere=None):
  """Creates `path` (its `~` expanded), refuses a folder of other files or of another command's outputs
  (`workdir.claim`), and proves it writable now, not after training; returns it.

  With several processes only process 0 does so, and the others return `elsewhere(path)`; a refusal on
  process 0 stops every process at once (the others waited at their first collective).
  """
  import jax  # pylint: disable=import-outside-toplevel

  from linear_jax.datapath import factory as datapath  # pylint: disable=import-outside-toplevel

  try:
    with datapath.together(f'--workdir={path}'):
      return _prepare_workdir(path, command) if jax.process_index() == 0 else elsewhere(path)
  except ValueError as e:  # process 0 failed: it exits with its own error, the others with this one
    raise SystemExit(f'Error: {e}') from e


def _prepare_workdir(path, command):
  from linear_jax.training import workdir  # pylint: disable=import-outside-toplevel

  if not path.strip():
    raise SystemExit('Error: --workdir is empty; name the folder the outputs go to.')
  path = expand_path(path)
  _refuse_inputs_inside(path)
  try:
    workdir.claim(path, command=command)
    fd, probe = tempfile.mkstemp(prefix='.linear_jax-write-test-', dir=path)  # a new file, never a link
    try:
      os.write(fd, b'ok')
    finally:
      os.close(fd)
      os.remove(probe)
  except OSError as e:
    raise SystemExit(f'Error: --workdir={path} is not writable: {e.strerror}.') from e
  except ValueError as e:
    raise SystemExit(f'Error: {e}') from e
  return path


# Flags that name a file the run reads: none may lie in the workdir, whose files the outputs replace.
INPUT_FLAGS = ('data_path', 'labels_path', 'test_path', 'test_labels_path')


def _refuse_inputs_inside(path):
  """Exits naming the first input file (`INPUT_FLAGS`) in the folder `path` itself, links resolved: an
  output of the same name (`params.npz`, `train.csv`, …) would replace it. The outputs are written in
  the folder itself, so a file in a subfolder of it is safe."""
  root = os.path.realpath(path)
  for name in INPUT_FLAGS:
    value = flags.FLAGS[name].value if name in flags.FLAGS else None
    if value and os.path.dirname(os.path.realpath(expand_path(value))) == root:
      raise SystemExit(
        f'Error: --{name}={value} lies inside --workdir={path}, whose files the outputs replace; '
        'choose a --workdir apart from the data.'
      )


def prepare_output_file(flag, path, ours=None):
  """Proves `--flag=path` (its `~` expanded) can be written now, before any work; returns the path.

  Its folder is made; a folder given as the file, a file there that `ours(path)` does not recognize as
  this command's (the user's own file, which the output would replace), or a file that cannot be opened
  for writing, is a one-line error naming the flag. A file that was not there is not left behind.
  """
  path = expand_path(path)
  if os.path.isdir(path):
    raise SystemExit(f'Error: --{flag}={path} is a folder; give the name of a file to write.')
  if os.path.islink(path):  # the output replaces a link, and is never written through one
    raise SystemExit(
      f'Error: --{flag}={path} is a link (to {os.readlink(path)}); choose a new name, or remove the link.'
    )
  if os.path.lexists(path) and not (ours is not None and ours(path)):
    raise SystemExit(
      f'Error: --{flag}={path} is a file this command did not write; choose a new name, or remove it.'
    )
  folder = os.path.dirname(os.path.abspath(path))
  if os.path.lexists(folder) and not os.path.isdir(folder):
    raise SystemExit(f'Error: --{flag}={path} cannot be written: {folder} is not a folder.')
  try:  # a new file beside it, never the file itself: a link planted at its name is not followed
    os.makedirs(folder, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix='.linear_jax-write-test-', dir=folder)
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise SystemExit(f'Error: --{flag}={path} cannot be written: {e.strerror}.') from e
  return path


def versions():
  return experiment.versions()


def _default_cache_dir():
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'linear_jax', 'xla')


flags.DEFINE_string(
  'compilation_cache',
  _default_cache_dir(),
  'Directory where compiled XLA programs are kept between runs, so a repeated run skips compilation '
  '(the default training run takes about 1.7 s with it, 3.6 s without; at most 512 MiB, least recently used '
  'programs go first); empty to turn it off.',
)
GROUPS['compilation_cache'] = 'run'


def group(key, *names):
  """Lists the command's own flags `names` under the `--help` heading `HEADINGS[key]`."""
  GROUPS.update(dict.fromkeys(names, key))


HELP_ARGS = ('-h', '-?', '-help', '--help', '--help=true', '--help=True', '--helpshort')


def _flag_help(flag):
  """One flag as absl's help shows it: `--[no]name: help`, its default, and its syntax."""
  name = f'--[no]{flag.name}' if flag.boolean else f'--{flag.name}'
  lines = [flags.text_wrap(f'{name}: {flag.help}', 100, '      ', '  ')]
  if flag.default_as_str:
    lines.append(f'      (default: {flag.default_as_str})')
  syntax = flag.parser.syntactic_help
  if syntax and not flag.boolean and not hasattr(flag.parser, 'enum_values'):
    lines.append(f'      ({syntax})')
  return '\n'.join(lines)


def help_text(program=None):
  """What `--help` prints: the command's docstring and every flag it reads, under the headings of GROUPS.

  Flags the command defines that are in no group come last, under the command's name; absl's and
  JAX's own flags are left to `--helpfull`.
  """
  program = program or sys.argv[0]
  command = os.path.splitext(os.path.basename(program))[0]
  by_module = flags.FLAGS.flags_by_module_dict()
  ours = by_module.get(__name__, []) + by_module.get(program, [])
  sections = {key: [] for key in (*HEADINGS, command)}
  for flag in dict.fromkeys(ours):  # in the order they were defined
    sections[GROUPS.get(flag.name, command)].append(_flag_help(flag))
  doc = (getattr(sys.modules.get('__main__'), '__doc__', None) or '').strip()
  out = [doc, ''] if doc else []
  for key, lines in sections.items():
    if lines:
      out += [f'{HEADINGS.get(key, key)}:', *lines, '']
  out.append("--helpfull lists absl's and JAX's flags too.")
  return '\n'.join(out)


def _one_of(name, alias, flag_values):
  """A validator of flag `name`: refuses it given beside its `alias` (the alias sets it too, so the
  last one given would win without a word)."""

  def check(_):
    given = flag_values[alias].present
    if given and flag_values[name].present > given:
      raise flags.ValidationError(f'--{alias} is another name for --{name}: give one of them.')
    return True

  return check


def positive_in_dtype(name, dtype='float32'):
  """A validator of flag `name`: a number > 0 that `dtype` holds (neither infinite nor rounded to 0)."""

  def check(value):
    import numpy as np  # pylint: disable=import-outside-toplevel

    with np.errstate(over='ignore', under='ignore'):
      cast = np.dtype(dtype).type(value)
    if not (value > 0 and np.isfinite(cast) and cast > 0):
      raise flags.ValidationError(
        f'--{name} must be > 0 and finite in {dtype} (not rounded to 0 there), got {value:g}.'
      )
    return True

  return check


def flag_error_line(error, flag_values=flags.FLAGS):
  """absl's flag error as one line that starts with what is wrong, not with every flag's value.

  absl writes `flags loss=my.py:X, loss_hparams=[], margin=None: Loss 'my.py:X': ...` for a
  validator of several flags and `flag --h=1: --h must be ...` for one; the validators' own
  messages name their flags, so that prefix goes (a message that names no flag keeps
  `--name=value:` in front).
  """
  lines = [t for t in str(error).splitlines() if t.strip()]  # absl joins the failing validators' messages
  if len(lines) > 1:
    return ' '.join(flag_error_line(t, flag_values) for t in lines)
  text = str(error)
  for flag in set(flag_values._flags().values()):  # pylint: disable=protected-access
    for validator in getattr(flag, 'validators', ()):
      prefix = validator.print_flags_with_values(flag_values) + ': '
      if text.startswith(prefix):
        rest = text[len(prefix) :]
        named = any(f'--{name}' in rest for name in validator.get_flags_names())
        return rest if named or len(validator.get_flags_names()) > 1 else text.removeprefix('flag ')
  return text.removeprefix('flag ')


def parse_flags(argv, flag_values=flags.FLAGS):
  """absl's parsing, except that `--help` (or `-h`) prints `help_text()` and exits 0, and that a
  flag error is one line on stderr, `Error: <what is wrong>` (exit 1), not absl's `FATAL Flags
  parsing error: ...` and its advice on two lines."""
  args = argv[1:]
  if '--' in args:
    args = args[: args.index('--')]
  if any(a in HELP_ARGS for a in args):
    print(help_text(argv[0]))
    sys.exit(0)
  try:
    return flag_values(argv)
  except flags.Error as e:
    sys.stderr.write(f'Error: {flag_error_line(e, flag_values)} (--help lists the flags.)\n')
    sys.exit(1)


def run(main):
  """`app.run(main)` with this `--help`: what every experiment's `__main__` calls.

  First it moves every object alive so far (those of the modules imported: JAX, NumPy, linear_jax)
  to the collector's permanent generation (`gc.freeze`). They live until the process ends, and
  each full collection would otherwise walk them all again: the tracing of a run's programs
  triggers several (with the interpreter's exit, which ran more, about 0.4 s of a default run).

  When the experiment exits (`SystemExit`, as absl's `app.run` always does), the process ends
  through `exit_now`: the exit handlers run, the output is flushed, and the interpreter's own
  teardown of JAX's modules and objects (0.07 s of the default run) is skipped.
  """
  gc.freeze()
  try:
    _stack.in_one_block(app.run, main, flags_parser=parse_flags)  # its tracing, in one block of frames
  except SystemExit as e:
    if _watched():  # a profiler or debugger writes its findings after the program returns
      raise
    exit_now(e.code)


def _watched():
  """Whether a profiler, tracer or debugger watches this process (`python -m cProfile`, pdb, coverage)."""
  monitoring = getattr(sys, 'monitoring', None)  # Python 3.12+: cProfile and coverage may use it
  tools = () if monitoring is None else (monitoring.get_tool(i) for i in range(6))
  return sys.gettrace() is not None or sys.getprofile() is not None or any(t is not None for t in tools)


def exit_now(code):
  """Ends the process with `code` (a `SystemExit`'s: `None`, a number, or a message for stderr and
  status 1) as the interpreter would, but without tearing down its modules.

  Every `atexit` handler runs first, in the usual order (logging's flush, JAX's shutdown of its
  multi-process runtime and backends), then stdout and stderr are flushed; what is left is memory,
  which the operating system takes back. Not run: objects' finalizers and the wait for non-daemon
  threads. No thread of the library's is left to finish work: the files a run writes are closed (and
  renamed into place) before its call returns.
  """
  if code is not None and not isinstance(code, int):
    if sys.stderr is not None:
      sys.stderr.write(f'{code}\n')
    code = 1
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  for stream in (sys.stdout, sys.stderr):
    try:
      if stream is not None:  # None: closed when the process started (`>&-`)
        stream.flush()
    except (OSError, ValueError):  # a closed pipe: the interpreter's own exit says so with status 120
      code = code or 120
  os._exit((code or 0) & 0xFF)  # pylint: disable=protected-access  (the status the OS keeps: 8 bits)


def configure_compilation_cache(f):
  """Keeps compiled programs across runs in --compilation_cache (call before any JAX work).

  The cache only saves time: if the directory cannot be made or written, a
  warning names it and the run goes on compiling as usual.
  """
  from absl import logging  # pylint: disable=import-outside-toplevel

  path = expand_path(f.compilation_cache or '')
  import jax  # pylint: disable=import-outside-toplevel

  if not path:  # off, even where JAX_COMPILATION_CACHE_DIR names a folder
    jax.config.update('jax_enable_compilation_cache', False)
    return
  try:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
      raise PermissionError(13, 'Permission denied')
  except OSError as e:
    logging.warning('--compilation_cache=%s cannot be used (%s); compiling without it.', path, e.strerror)
    jax.config.update('jax_enable_compilation_cache', False)
    return
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  if importlib.util.find_spec('filelock'):  # JAX needs it to evict; without it the cache is uncapped
    jax.config.update('jax_compilation_cache_max_size', 512 * 2**20)  # least recently used go first


def quiet_logs():
  """Only warnings from the libraries' loggers (JAX tells of every backend it tries)."""
  from absl import logging  # pylint: disable=import-outside-toplevel

  logging.set_verbosity(logging.WARNING)


def configure_precision(f):
  """Turns on float64 in JAX when --dtype=float64 asks for it, or --reference for f* (before any JAX work).

  Training keeps its --dtype either way: every training array is cast to it.
  """
  if getattr(f, 'dtype', 'float32') == 'float64' or getattr(f, 'reference', False):
    import jax  # pylint: disable=import-outside-toplevel

    jax.config.update('jax_enable_x64', True)


def show_notices():
  """Prints each notice of the data readers (`readers.ReadNotice`) as one line on stderr, `Note: ...`,
  not as Python's two-line warning; other warnings are shown as before."""
  import warnings  # pylint: disable=import-outside-toplevel

  from linear_jax.data import readers  # pylint: disable=import-outside-toplevel

  shown = warnings.showwarning

  def show(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, readers.ReadNotice):
      print(f'Note: {message}', file=sys.stderr, flush=True)
    else:
      shown(message, category, filename, lineno, file, line)

  warnings.showwarning = show


def start(f):
  """What every experiment does first, before any JAX work: quiet library logs,
  the data readers' notices as one line each, the compilation cache, float64 if
  `--dtype` asks for it, and the multi-host runtime if the flags ask for it."""
  quiet_logs()
  show_notices()
  configure_compilation_cache(f)
  configure_precision(f)
  if 'distributed' in f:  # only experiments with the training flags have it
    start_distributed(f)


def start_distributed(f):
  """Starts JAX's multi-process runtime if the flags ask for it (before any JAX work)."""
  if f.distributed or f.coordinator_address:
    from linear_jax.datapath import parallel  # pylint: disable=import-outside-toplevel

    parallel.initialize(f.coordinator_address, f.num_processes, f.process_id)
