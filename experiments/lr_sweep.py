r"""Sweeps learning rate × regularization, every setting trained together.

    python -m experiments.lr_sweep --dataset=digits --loss=softmax \
        --lr_min=1e-4 --lr_max=10 --num_lrs=16 --regs=0,1e-4,1e-3,1e-2
    python -m experiments.lr_sweep --parallel=shard_map   # models spread over the devices
    python -m experiments.lr_sweep --optimizer=lbfgs --regs=1e-6,1e-5,1e-4,1e-3,1e-2  # a path

Writes sweep.json and sweep.csv (per model: hyperparameters, final and best
metrics, best epoch, diverged step), heatmap.png, loss_vs_lr.png and
curves.png to --workdir, and prints the best setting; --retrain_best trains
it alone and reports its test metric. With --seeds=0,1,2 every setting is
trained once per seed, judged by its mean over them, and settings.csv (and
the JSON's "settings") holds each setting's mean and standard deviation.
With --optimizer=lbfgs it fits the regularization path instead: every reg
solved to --tol by L-BFGS in one compiled program (no learning rates), the
best chosen on validation, path.json and path.png (validation metric and ‖W‖
against reg) in --workdir.
"""

import os
import shutil
import sys
import tempfile

from absl import flags
import numpy as np

from linear_jax.optim import config
from linear_jax.runs import progress
from linear_jax.runs import sweep_run
from linear_jax.training import preemption
from linear_jax.tuning import sweep as sweep_lib
from linear_jax.tuning import sweep_state

from . import common
from . import longrun

common.define_objective_flags()
common.define_data_flags()
common.define_training_flags()
common.define_convergence_flags(tol_only=True)
common.define_number_list(
  'lrs',
  None,
  'Comma-separated learning rates (instead of --lr_min/--lr_max/--num_lrs).',
  bound=sweep_lib.BOUNDS['learning_rate'],
)
flags.DEFINE_float(
  'lr_min', None, 'Smallest learning rate of a log-spaced range, > 0 (default: 1/32 of the derived rate).'
)
flags.DEFINE_float(
  'lr_max', None, 'Largest learning rate of a log-spaced range (default: 8 times the derived rate).'
)
flags.DEFINE_integer('num_lrs', 16, 'Learning rates in the log-spaced range.', lower_bound=1)
common.define_number_list(
  'regs', '0,1e-4,1e-3,1e-2', 'Comma-separated regularization strengths.', bound=sweep_lib.BOUNDS['reg']
)
# A margin's bounds are its loss's (`Loss.bounds`): checked with --loss below, not here.
common.define_number_list(
  'margins',
  None,
  "Optional comma-separated margins to sweep too (losses with a margin), within the loss's bounds.",
)
flags.DEFINE_multi_string(
  'sweep_loss_hparam',
  [],
  'NAME=V1,V2,...: sweep a hyperparameter of the loss too, in the same compiled program (repeatable; '
  '--margins=... is short for --sweep_loss_hparam=margin=...).',
)
common.define_number_list(
  'momenta',
  None,
  'Optional comma-separated momenta to sweep too (momentum optimizers).',
  bound=sweep_lib.BOUNDS['momentum'],
)
common.define_number_list(
  'seeds',
  None,
  'Optional comma-separated seeds (initialization and batch order): every setting is trained once per '
  'seed and judged by its mean over them (the split stays that of --seed).',
  bound=sweep_lib.BOUNDS['seed'],
)
flags.DEFINE_integer('chunk_size', 0, 'Train at most this many models at once (0: all).', lower_bound=0)
flags.DEFINE_bool('retrain_best', False, 'Retrain the best setting alone and report its test metric.')
flags.DEFINE_bool('refit', False, '--optimizer=lbfgs: solve the chosen reg again on train + validation.')
flags.DEFINE_string('workdir', 'workdir/sweep', 'Where outputs and the checkpoint go.')
flags.DEFINE_bool('resume', False, 'Continue from --workdir/sweep_checkpoint.npz (bit for bit).')
flags.DEFINE_integer(
  'checkpoint_every',
  sweep_lib.CHECKPOINT_EVERY,
  'Epochs between checkpoints (and after every chunk).',
  lower_bound=1,
)
flags.DEFINE_bool('quiet', False, 'No progress display.')
flags.DEFINE_bool(
  'verbose', False, "A line per epoch (default: one line that updates in place, or a log's line every 5 s)."
)
common.group('run', 'workdir', 'resume', 'checkpoint_every', 'quiet', 'verbose')
flags.register_multi_flags_validator(
  ['quiet', 'verbose'],
  lambda f: not (f['quiet'] and f['verbose']),
  message='--quiet shows no progress and --verbose every epoch: give one.',
)


def _held_by_the_dtype(f):
  """Refuses a listed value the training dtype cannot hold (1e-50 is 0 in float32, 1e300 infinite), by
  its flag, before the data loads."""
  named = {'lrs': 'learning_rate', 'regs': 'reg', 'momenta': 'momentum', 'margins': 'margin'}
  for flag, name in named.items():
    for value in f[flag] or ():
      try:
        config.check_representable(name, value, f['dtype'])
      except ValueError as e:
        raise flags.ValidationError(f'--{flag}: {e}') from e
  return True


flags.register_multi_flags_validator(['lrs', 'regs', 'momenta', 'margins', 'dtype'], _held_by_the_dtype)

FLAGS = flags.FLAGS


_LR = sweep_lib.BOUNDS['learning_rate']
for _name in ('lr_min', 'lr_max'):
  flags.register_validator(
    _name,
    lambda v: v is None or _LR.admits(v),
    message=f'--{_name} must be a finite number {_LR.describe()}.',
  )
flags.register_multi_flags_validator(
  ['reg'],
  lambda f: not FLAGS['reg'].present,
  message='lr_sweep trains every strength of --regs: give them there (--regs=0.5, say), not --reg.',
)
flags.register_multi_flags_validator(
  ['momentum', 'momenta'],
  lambda f: not (FLAGS['momentum'].present and f['momenta'] is not None),
  message='--momenta lists the momenta the sweep trains: drop --momentum.',
)
flags.register_multi_flags_validator(
  ['refit', 'optimizer'],
  lambda f: not f['refit'] or f['optimizer'] == 'lbfgs',
  message='--refit refits the L-BFGS path (--optimizer=lbfgs); a sweep retrains its best: --retrain_best.',
)


def loss_hparam_axes(items, margins):
  """`['delta=0.5,1']` and `--margins` -> `{'delta': [0.5, 1.0], 'margin': [...]}`."""
  axes = {}
  for item in items:
    name, eq, values = item.partition('=')
    if not eq or not name.strip():
      raise flags.ValidationError(f'--sweep_loss_hparam: {item!r} is not NAME=V1,V2,...')
    if name.strip() in axes:
      raise flags.ValidationError(f'--sweep_loss_hparam names {name.strip()!r} twice.')
    axes[name.strip()] = common.parse_float_list(f'sweep_loss_hparam={name.strip()}', values)
  if margins:
    if 'margin' in axes:
      raise flags.ValidationError(
        '--margins and --sweep_loss_hparam=margin=... both sweep the margin; give one.'
      )
    axes['margin'] = list(margins)
  return axes


def _loss_hparam_axes_ok(f):
  from linear_jax.maths import losses  # pylint: disable=import-outside-toplevel

  axes = loss_hparam_axes(f['sweep_loss_hparam'], f['margins'])
  try:
    spec = losses.get_loss(f['loss'])
  except ValueError:
    return True  # the --loss validator names the problem
  fixed = common.parse_loss_hparams(f['loss_hparams'], f['margin'])
  for name, values in axes.items():
    if name in fixed:
      raise flags.ValidationError(f'--loss_hparams sets {name!r} and the sweep varies it; give one.')
    for v in values:
      try:
        spec.resolve_hparams({name: v})
      except ValueError as e:
        flag = '--margins' if name == 'margin' and f['margins'] else '--sweep_loss_hparam'
        raise flags.ValidationError(f'{flag}: {e}') from e
  return True


flags.register_multi_flags_validator(
  ['sweep_loss_hparam', 'margins', 'loss', 'loss_hparams', 'margin'], _loss_hparam_axes_ok
)
flags.register_multi_flags_validator(
  ['lr_min', 'lr_max', 'lrs'],
  lambda f: f['lrs'] is not None or None in (f['lr_min'], f['lr_max']) or f['lr_min'] < f['lr_max'],
  message='--lr_min must be < --lr_max.',
)
flags.register_multi_flags_validator(
  ['lrs', 'lr_min', 'lr_max', 'num_lrs'],
  lambda f: f['lrs'] is None or not any(FLAGS[n].present for n in ('lr_min', 'lr_max', 'num_lrs')),
  message='--lrs lists the learning rates and --lr_min, --lr_max, --num_lrs make a range of them: give one.',
)
flags.register_multi_flags_validator(
  ['momenta', 'optimizer'],
  lambda f: f['momenta'] is None or f['optimizer'] in ('momentum', 'nesterov'),
  message='--momenta sweeps the momentum of --optimizer=momentum or nesterov; the others have none.',
)
# What only a sweep of first-order runs reads: the L-BFGS path would ignore it.
SWEEP_ONLY = (
  'lrs',
  'lr_min',
  'lr_max',
  'num_lrs',
  'seeds',
  'margins',
  'sweep_loss_hparam',
  'retrain_best',
  'chunk_size',
)


def _path_reads_it(f):
  unread = [f'--{n}' for n in SWEEP_ONLY if FLAGS[n].present]
  if f['optimizer'] == 'lbfgs' and unread:
    raise flags.ValidationError(
      f'--optimizer=lbfgs fits the regularization path over --regs and reads no {", ".join(unread)}; '
      f'drop {"it" if len(unread) == 1 else "them"}.'
    )
  return True


flags.register_multi_flags_validator(['optimizer', *SWEEP_ONLY], _path_reads_it)


def _sweep_reads_it(f):
  """A sweep trains every setting for --epochs, evaluating each epoch, and stops none early: early
  stopping and its evaluations are --retrain_best's run's alone, and a tolerance the L-BFGS path's."""
  unread = [
    f'--{n}'
    for n, default in (('patience', 0), ('eval_every', 1))
    if f[n] != default and not f['retrain_best']
  ]
  if FLAGS['tol'].present and f['optimizer'] != 'lbfgs':
    unread.append('--tol')
  if unread:
    raise flags.ValidationError(
      'lr_sweep trains every setting for --epochs, evaluates each epoch and chooses its best on validation; '
      "--patience and --eval_every apply to --retrain_best's run alone, --tol to --optimizer=lbfgs (a "
      f'regularization path) alone: drop {", ".join(unread)}.'
    )
  return True


flags.register_multi_flags_validator(
  ['optimizer', 'patience', 'eval_every', 'tol', 'retrain_best'], _sweep_reads_it
)


def learning_rates(cfg, dataset):
  """--lrs; else --lr_min to --lr_max; else a range around --learning_rate (its default, auto, derived
  from the problem as `train` derives it at its start) from 1/32 to 8 times it, where --lr_min or
  --lr_max, given alone, sets its own end."""
  if FLAGS.lrs is not None:
    return FLAGS.lrs
  if FLAGS.lr_min is not None and FLAGS.lr_max is not None:
    return list(np.logspace(np.log10(FLAGS.lr_min), np.log10(FLAGS.lr_max), FLAGS.num_lrs))
  rates, center, found = sweep_lib.rates_around(cfg, dataset, FLAGS.num_lrs)
  if FLAGS.lr_min is not None or FLAGS.lr_max is not None:
    low = rates[0] if FLAGS.lr_min is None else FLAGS.lr_min
    high = rates[-1] if FLAGS.lr_max is None else FLAGS.lr_max
    if not low < high:
      given = f'--lr_min={low:g}' if FLAGS.lr_min is not None else f'--lr_max={high:g}'
      derived = ('8 times', high) if FLAGS.lr_min is not None else ('1/32 of', low)
      other = f'{derived[0]} the derived rate, {derived[1]:.3g}'
      raise ValueError(f"{given} is past the range's other end ({other}): give both --lr_min and --lr_max.")
    rates = list(np.logspace(np.log10(low), np.log10(high), FLAGS.num_lrs))
  how = f'learning_rate=auto: {center:.3g} ({found["method"]})' if found else f'--learning_rate={center:g}'
  print(f'{FLAGS.num_lrs} learning rates from {rates[0]:.3g} to {rates[-1]:.3g} around {how}', flush=True)
  return rates


def _progress(display):
  """The sweep's `on_epoch`: its line to `display` (a `progress.Progress`)."""
  return lambda epoch, start, k, total, metrics, dead: display(
    sweep_run.progress_line(epoch, FLAGS.epochs, start, k, total, metrics, dead)
  )


def run_path(cfg, dataset, workdir):
  """--optimizer=lbfgs: the regularization path over --regs, chosen on validation."""
  max_iter = FLAGS.epochs if FLAGS['epochs'].present else common.MAX_EPOCHS
  return sweep_run.path_and_write(cfg, dataset, workdir, FLAGS.regs, max_iter, refit=FLAGS.refit)


def run(workdir, display):

  cfg = common.train_config(FLAGS)
  dataset = common.load_dataset(FLAGS)
  if cfg.optimizer == 'lbfgs':
    return run_path(cfg, dataset, workdir)
  return sweep_run.sweep_and_write(
    cfg,
    dataset,
    workdir,
    learning_rates(cfg, dataset),
    FLAGS.regs,
    loss_hparams=loss_hparam_axes(FLAGS.sweep_loss_hparam, FLAGS.margins),
    momenta=FLAGS.momenta,
    seeds=FLAGS.seeds,
    retrain_best=FLAGS.retrain_best,
    checkpoint_path=checkpoint_path(workdir),
    resume=FLAGS.resume,
    chunk_size=FLAGS.chunk_size or None,
    on_epoch=None if FLAGS.quiet else _progress(display),
    checkpoint_every=FLAGS.checkpoint_every,
  )


def checkpoint_path(workdir):
  """Where the sweep's checkpoint goes; `None` with several processes (see sweep.run_sweep)."""
  import jax  # pylint: disable=import-outside-toplevel

  return os.path.join(workdir, sweep_state.FILE) if jax.process_count() == 1 else None


def main(argv):
  del argv
  common.start(FLAGS)
  import jax  # pylint: disable=import-outside-toplevel

  main_process = jax.process_index() == 0  # only process 0 writes outputs
  workdir = common.prepare_workdir(FLAGS.workdir, 'lr_sweep', elsewhere=lambda _: tempfile.mkdtemp())
  if main_process and FLAGS.optimizer != 'lbfgs':  # a path keeps no checkpoint
    longrun.note_fresh_start(FLAGS.resume, checkpoint_path(workdir))
  display = progress.Progress(verbose=FLAGS.verbose)
  try:
    with longrun.guarded(workdir if main_process else None):
      out = run(workdir, display)
  except preemption.Stopped as e:
    display.close()
    longrun.exit_stopped(__spec__.name, e.checkpoint, e.progress)  # the module as it was started
  except ValueError as e:
    display.close()
    sys.exit(f'Error: {e}')
  display.close()
  if not main_process:
    shutil.rmtree(workdir)
    return
  varied = loss_hparam_axes(FLAGS.sweep_loss_hparam, FLAGS.margins)
  print('\n'.join(sweep_run.result_lines(out, workdir, varied)))
  if out['best'] is None:
    sys.exit(f'Every model diverged: lower {"the values of --lrs" if FLAGS.lrs else "--lr_max"}.')


if __name__ == '__main__':
  common.run(main)
