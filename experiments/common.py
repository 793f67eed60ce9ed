"""Flag definitions shared by several experiments, and their validators."""

import dataclasses
import importlib.util
import os

from absl import flags

from linear_jax.maths import losses
from linear_jax.optim import config
from linear_jax.runs import experiment

PENALTY_NAMES = tuple(losses.PENALTIES)
# Every flag that sets a `TrainConfig` field takes its default from `config.COMMAND_LINE` (the
# command line's run: converging, at most MAX_EPOCHS epochs, DEFAULT_REG), except the sweeps'
# fixed `--epochs`, which is `TrainConfig()`'s.
RUN = config.COMMAND_LINE
DATA = experiment.DataConfig()  # the data flags' defaults
MAX_EPOCHS = RUN.epochs
DEFAULT_REG = RUN.reg


def validate_as_field(name, field=None, record=None):
  """Checks `--name` by the `validate()` of the config record whose `field` it sets: bounds said once.

  `record` is `train.TrainConfig` unless given (`experiment.DataConfig`); the
  record's message, e.g. `momentum must be in [0, 1), got 1.5.`, becomes the
  flag error `--momentum must be in [0, 1), got 1.5.`
  """
  field = field or name

  def check(value):
    from linear_jax.training import train  # pylint: disable=import-outside-toplevel

    try:
      (record or train.TrainConfig)(**{field: value}).validate()
    except ValueError as e:
      raise flags.ValidationError(f'--{name}{str(e).removeprefix(field)}') from e
    return True

  flags.register_validator(name, check)


def define_objective_flags(allow_all=False):
  """`--loss`, `--loss_hparams`, `--margin`, `--penalty`, `--reg`, `--seed`; `all` allowed if asked."""
  flags.DEFINE_string(
    'loss',
    'all' if allow_all else RUN.loss,
    f'Loss of the scores: {", ".join(sorted(losses.LOSSES))}{", all" if allow_all else ""}; or a Loss '
    'record in your own file, FILE.py:NAME, or module, package.module:NAME (this runs that file).',
  )
  flags.DEFINE_list(
    'loss_hparams', [], 'Hyperparameters of the loss, NAME=VALUE,... (e.g. delta=0.5); defaults for the rest.'
  )
  flags.DEFINE_float(
    'margin', None, 'Margin Δ of the losses that have one (svm, hinge, ...); their default if unset.'
  )
  flags.DEFINE_enum(
    'penalty',
    'all' if allow_all else RUN.penalty,
    PENALTY_NAMES + (('all',) if allow_all else ()),
    'Penalty on W (never on the bias).',
  )
  flags.DEFINE_float('reg', 0.1 if allow_all else DEFAULT_REG, 'Regularization strength, >= 0.')
  validate_as_field('reg')
  flags.DEFINE_integer('seed', RUN.seed, 'Seed of every random draw.')

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
      out[name.strip()] = float(value)
    except ValueError as e:
      raise flags.ValidationError(f'--loss_hparams: {item!r} is not NAME=NUMBER.') from e
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
  return values


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
  """Which dataset, where its files are, how it is split and preprocessed."""
  from linear_jax.data import datasets as data  # pylint: disable=import-outside-toplevel

  flags.DEFINE_enum('dataset', DATA.dataset, data.DATASETS, 'Dataset to train on.')
  flags.DEFINE_string('data_dir', None, 'cifar10 / mnist: the unpacked folder or the folder above it.')
  flags.DEFINE_string('data_path', None, 'npz / npy / csv: the file (npy: the features, memory-mapped).')
  flags.DEFINE_string('labels_path', None, 'npy: the labels (or real targets), one per row of --data_path.')
  flags.DEFINE_bool(
    'stream',
    RUN.stream,
    'Train by reading the training split from the file in blocks instead of holding it. With an .npy or '
    'an uncompressed .npz the splits are then contiguous row ranges of the file (training, validation, '
    'test; --seed does not shuffle them), so its rows should be in random order.',
  )
  flags.DEFINE_string(
    'test_path',
    None,
    'npz / npy / csv: a held-out test file in the format of --data_path (no test split taken).',
  )
  flags.DEFINE_string('test_labels_path', None, 'npy: the labels of --test_path.')
  flags.DEFINE_enum(
    'delimiter', DATA.delimiter, experiment.DELIMITERS, 'csv: the field delimiter (auto: detected).'
  )
  flags.DEFINE_string('weight_column', None, 'csv: a column of sample weights, by header name or index.')
  flags.DEFINE_enum(
    'class_weight',
    DATA.class_weight,
    experiment.CLASS_WEIGHTS,
    "balanced: weigh each class n / (C * count), as scikit-learn's.",
  )
  flags.DEFINE_string('target_column', DATA.target_column, 'csv: the target column, by header name or index.')
  flags.DEFINE_integer('num_examples', DATA.num_examples, 'Synthetic data: N, >= 1.')
  flags.DEFINE_integer('num_features', DATA.num_features, 'Synthetic data: D, >= 1.')
  flags.DEFINE_integer('num_classes', DATA.num_classes, 'Synthetic blobs: C, >= 2.')
  flags.DEFINE_float('val_fraction', DATA.val_fraction, 'Fraction of the data held out for validation.')
  flags.DEFINE_float(
    'test_fraction', DATA.test_fraction, 'Fraction held out for test (unless the format has a test split).'
  )
  flags.DEFINE_enum('preprocess', DATA.preprocess, data.PREPROCESSING, 'Fitted on the training split only.')
  flags.DEFINE_enum(
    'features', DATA.features, data.REPRESENTATIONS, 'Image data: raw pixels or a histogram of them.'
  )
  flags.DEFINE_integer('bins', DATA.bins, 'Histogram bins per channel with --features=histogram, >= 1.')
  for name in ('num_examples', 'num_features', 'num_classes', 'val_fraction', 'test_fraction', 'bins'):
    validate_as_field(name, record=experiment.DataConfig)


# The data flags that are `experiment.DataConfig`'s fields, by the same names.
DATA_FIELDS = tuple(field.name for field in dataclasses.fields(experiment.DataConfig))


# The target kind of each dataset whose kind is known before loading it.
KNOWN_KINDS = {
  'digits': ('class', 10),
  'breast_cancer': ('class', 2),
  'diabetes': ('real', None),
  'linreg': ('real', None),
  'binary2d': ('class', 2),
}


def define_training_flags(max_epochs=False):
  """Optimizer, schedule, batches, gradient source and the rest of a training run.

  With `max_epochs`, the epoch count is `--max_epochs` (a cap: the run stops
  when it has converged, see `define_convergence_flags`), `--epochs` its alias.
  """
  from linear_jax.maths import grad_sources  # pylint: disable=import-outside-toplevel
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  flags.DEFINE_enum(
    'optimizer',
    RUN.optimizer,
    train.OPTIMIZERS,
    'optax optimizer; lbfgs: full-batch L-BFGS to --tol (smooth losses).',
  )
  flags.DEFINE_float('learning_rate', RUN.learning_rate, 'Base learning rate, > 0.')
  flags.DEFINE_float('momentum', RUN.momentum, 'Momentum of the momentum and nesterov optimizers, in [0, 1).')
  flags.DEFINE_enum('schedule', RUN.schedule, train.SCHEDULES, 'Learning-rate schedule.')
  flags.DEFINE_float(
    'decay_rate', RUN.decay_rate, 'step / exponential / inverse_time: factor per decay period.'
  )
  flags.DEFINE_float(
    'decay_epochs', RUN.decay_epochs, 'step / exponential / inverse_time: epochs per decay period.'
  )
  flags.DEFINE_integer('batch_size', RUN.batch_size, 'Mini-batch size, > 0 (see --full_batch).')
  flags.DEFINE_bool('full_batch', False, 'Full-batch gradient descent: one step per epoch on all examples.')
  epochs = 'max_epochs' if max_epochs else 'epochs'
  if max_epochs:
    flags.DEFINE_integer(
      'max_epochs', MAX_EPOCHS, 'The most passes over the training data, > 0 (L-BFGS: iterations).'
    )
    flags.DEFINE_alias('epochs', 'max_epochs')
  else:
    flags.DEFINE_integer('epochs', config.TrainConfig().epochs, 'Passes over the training data, > 0.')
  flags.DEFINE_enum('grad', RUN.grad, grad_sources.GRAD_SOURCES, 'Gradient source.')
  flags.DEFINE_bool('bias_trick', RUN.bias_trick, 'Fold b into W and append the constant-1 feature.')
  flags.DEFINE_float('init_scale', RUN.init_scale, 'Standard deviation of the initial weights, >= 0.')
  flags.DEFINE_integer(
    'patience', RUN.patience, 'Early stopping: epochs without validation gain, >= 0 (0: off).'
  )
  flags.DEFINE_enum('dtype', RUN.dtype, train.DTYPES, 'Training precision.')
  flags.DEFINE_integer(
    'eval_every',
    RUN.eval_every,
    'Epochs between evaluations of the training and validation splits (the last epoch is always '
    'evaluated), > 0; every epoch also records the loss its training pass measured.',
  )
  flags.DEFINE_integer(
    'block_rows',
    RUN.block_rows,
    'Streaming: rows per block read from the file, >= 0 (0: about 32 MiB); a multiple of the batch for '
    'SGD, and of the device count for full passes with --parallel=shard_map.',
  )
  flags.DEFINE_enum('parallel', RUN.parallel, train.PARALLEL, 'Data parallelism over devices.')
  flags.DEFINE_integer('num_devices', RUN.num_devices, 'Devices to use with --parallel, >= 0 (0: all).')
  flags.DEFINE_string('coordinator_address', None, 'Multi-host: host:port of process 0.')
  flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes.', lower_bound=1)
  flags.DEFINE_integer(
    'process_id', None, 'Multi-host: this process, in [0, --num_processes).', lower_bound=0
  )
  flags.DEFINE_bool(
    'distributed', False, 'Multi-host from the cluster environment JAX detects (Slurm, MPI, TPU).'
  )
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
  # 0 is full batch in TrainConfig; the flag for it is --full_batch.
  flags.register_validator('batch_size', lambda v: v > 0, message='--batch_size must be > 0.')
  validate_as_field(epochs, 'epochs')
  for name in ('learning_rate', 'momentum', 'decay_rate', 'decay_epochs', 'init_scale', 'patience'):
    validate_as_field(name)
  for name in ('eval_every', 'block_rows', 'num_devices'):
    validate_as_field(name)

  def loss_fits_dataset(f):
    known = KNOWN_KINDS.get(f['dataset'])
    if f['dataset'] == 'blobs':
      known = ('class', f['num_classes'])
    if known is None:
      return True  # files: checked once loaded, before any compile
    from linear_jax.data import datasets as data  # pylint: disable=import-outside-toplevel

    try:
      targets = losses.get_loss(f['loss']).targets
    except ValueError:
      return True  # the --loss validator names the problem
    why = data.fits_loss(known[1], known[0], targets)
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
    if flags.FLAGS['batch_size'].present:
      raise flags.ValidationError(
        '--optimizer=lbfgs is full-batch (its line search needs the exact objective); drop --batch_size.'
      )
    return True

  flags.register_multi_flags_validator(['optimizer', 'loss', 'penalty', 'reg', 'batch_size'], lbfgs_fits)


def define_convergence_flags(tol_only=False):
  """`--tol`, `--n_iter_no_change`, `--tol_on`: when a training run has converged (convergence.py).

  With `tol_only`, just `--tol` (the sweeps run a fixed count; their L-BFGS paths stop on --tol).
  """
  from linear_jax.optim import convergence  # pylint: disable=import-outside-toplevel

  flags.DEFINE_float(
    'tol',
    None,
    'Convergence tolerance, > 0: relative decrease of the training objective (--tol_on=objective; '
    'default 1e-3) or the largest gradient entry (--tol_on=grad_norm, and always for --optimizer=lbfgs; '
    'default 1e-4), as in scikit-learn.',
  )
  validate_as_field('tol')
  if tol_only:
    return
  flags.DEFINE_integer(
    'n_iter_no_change',
    RUN.n_iter_no_change,
    '--tol_on=objective: epochs in a row without a decrease of --tol, > 0.',
  )
  validate_as_field('n_iter_no_change')
  flags.DEFINE_enum('tol_on', RUN.tol_on, convergence.TOL_ON, 'What --tol tests; none: run all --max_epochs.')


def train_config(f):
  """The `TrainConfig` the parsed flags describe: each field from the flag of its name, where there is one.

  Two fields are said otherwise on the command line: `loss_hparams` (`--loss_hparams=NAME=VALUE,...`
  and `--margin`) and `batch_size` (0, a full batch, is `--full_batch`). A field without a flag in this
  experiment (`--tol_on` in the sweeps, `explode_factor` everywhere) keeps its default.
  """
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  said_otherwise = ('loss_hparams', 'batch_size')
  fields = [field.name for field in dataclasses.fields(train.TrainConfig) if field.name not in said_otherwise]
  return train.TrainConfig(
    **{name: f[name].value for name in fields if name in f},
    loss_hparams=loss_hparams_for(f, f.loss),
    batch_size=0 if f.full_batch else f.batch_size,
  )


def data_config(f):
  """The `experiment.DataConfig` the parsed data flags describe."""
  return experiment.DataConfig(**{name: f[name].value for name in DATA_FIELDS})


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


def prepare_workdir(path):
  """Creates `path` and proves it writable now, not after training."""
  import os  # pylint: disable=import-outside-toplevel

  try:
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, '.write-test')
    with open(probe, 'w') as fh:
      fh.write('ok')
    os.remove(probe)
  except OSError as e:
    raise SystemExit(f'--workdir={path} is not writable: {e.strerror}.') from e
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
  '(about 1 s of the 3.5 s of the default training run; at most 512 MiB, least recently used '
  'programs go first); empty to turn it off.',
)


def configure_compilation_cache(f):
  """Keeps compiled programs across runs in --compilation_cache (call before any JAX work).

  The cache only saves time: if the directory cannot be made or written, a
  warning names it and the run goes on compiling as usual.
  """
  from absl import logging  # pylint: disable=import-outside-toplevel

  path = os.path.expanduser(f.compilation_cache or '')
  if not path:
    return
  try:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
      raise PermissionError(13, 'Permission denied')
  except OSError as e:
    logging.warning('--compilation_cache=%s cannot be used (%s); compiling without it.', path, e.strerror)
    return
  import jax  # pylint: disable=import-outside-toplevel

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


def start(f):
  """What every experiment does first, before any JAX work: quiet library logs,
  the compilation cache, float64 if `--dtype` asks for it, and the multi-host
  runtime if the flags ask for it."""
  quiet_logs()
  configure_compilation_cache(f)
  configure_precision(f)
  if 'distributed' in f:  # only experiments with the training flags have it
    start_distributed(f)


def start_distributed(f):
  """Starts JAX's multi-process runtime if the flags ask for it (before any JAX work)."""
  if f.distributed or f.coordinator_address:
    from linear_jax.datapath import parallel  # pylint: disable=import-outside-toplevel

    parallel.initialize(f.coordinator_address, f.num_processes, f.process_id)
