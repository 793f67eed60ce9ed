"""One whole training run as a library call: `train_and_evaluate(config, data_config, workdir)`.

It loads the data `DataConfig` names, fits with `TrainConfig`, evaluates, and
writes every output to `workdir`: metrics.jsonl (one line per epoch),
params.npz (W [C, D] and b [C] in raw input units), summary.json and the
pictures (curves.png, templates.png for image data, regions.png for 2-D data).
`experiments/train.py` only turns flags into these records and calls it.
"""

from collections.abc import Callable
from collections.abc import Mapping
import dataclasses
import json
import os
import time
from typing import Any

import numpy as np

from linear_jax.data import datasets as data
from linear_jax.data import records
from linear_jax.data.features import REPRESENTATIONS
from linear_jax.data.features import histogram_features
from linear_jax.datapath import factory as datapath
from linear_jax.datapath import preparation
from linear_jax.maths import model
from linear_jax.maths import validation
from linear_jax.optim import results
from linear_jax.optim import stop_reasons
from linear_jax.training import checkpoint
from linear_jax.training import files
from linear_jax.training import lbfgs
from linear_jax.training import refit
from linear_jax.training import resume
from linear_jax.training import train

DELIMITERS = ('auto', ',', ';', 'tab')  # 'auto': detected
CLASS_WEIGHTS = ('none', 'balanced')


def _field(default, help_text, **more):
  """A field with its flag's help (and `choices`) in its metadata: experiments/common.py makes the flag."""
  return dataclasses.field(default=default, metadata={'help': help_text, **more})


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which dataset, where its files are, how it is split and preprocessed; the data flags of the experiments.

  The seed, the training dtype and streaming are `TrainConfig`'s (`seed`, `dtype`, `stream`). Each
  field's metadata holds the help of its flag (and its `choices`); the bounds are `validate()`'s.
  """

  dataset: str = _field('digits', 'Dataset to train on.', choices=data.DATASETS)
  data_dir: str | None = _field(None, 'cifar10 / mnist: the unpacked folder or the folder above it.')
  data_path: str | None = _field(None, 'npz / npy / csv: the file (npy: the features, memory-mapped).')
  labels_path: str | None = _field(None, 'npy: the labels (or real targets), one per row of --data_path.')
  test_path: str | None = _field(
    None, 'npz / npy / csv: a held-out test file in the format of --data_path (no test split taken).'
  )
  test_labels_path: str | None = _field(None, 'npy: the labels of --test_path.')
  delimiter: str = _field('auto', 'csv: the field delimiter (auto: detected).', choices=DELIMITERS)
  weight_column: str | None = _field(None, 'csv: a column of sample weights, by header name or index.')
  class_weight: str = _field(
    'none', "balanced: weigh each class n / (C * count), as scikit-learn's.", choices=CLASS_WEIGHTS
  )
  target_column: str = _field('-1', 'csv: the target column, by header name or index.')
  num_examples: int = _field(600, 'Synthetic data: N, >= 1.')
  num_features: int = _field(2, 'Synthetic data: D, >= 1.')
  num_classes: int = _field(3, 'Synthetic blobs: C, >= 2.')
  val_fraction: float = _field(0.1, 'Fraction of the data held out for validation.')
  test_fraction: float = _field(0.2, 'Fraction held out for test (unless the format has a test split).')
  preprocess: str = _field('standardize', 'Fitted on the training split only.', choices=data.PREPROCESSING)
  features: str = _field('pixels', 'Image data: raw pixels or a histogram of them.', choices=REPRESENTATIONS)
  bins: int = _field(16, 'Histogram bins per channel with --features=histogram, >= 1.')

  def validate(self):
    """Raises a `ValueError` naming the first bad field."""

    validation.check_name('dataset', self.dataset, data.DATASETS)
    validation.check_name('delimiter', self.delimiter, DELIMITERS)
    validation.check_name('class_weight', self.class_weight, CLASS_WEIGHTS)
    validation.check_name('preprocess', self.preprocess, data.PREPROCESSING)
    validation.check_name('features', self.features, REPRESENTATIONS)
    for name in ('val_fraction', 'test_fraction'):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f'{name} must be in [0, 1), got {getattr(self, name)}.')
    for name in ('num_examples', 'num_features', 'bins'):
      if not getattr(self, name) >= 1:
        raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}.')
    if not self.num_classes >= 2:
      raise ValueError(f'num_classes must be >= 2, got {self.num_classes}.')
    return self

  def check_read(self):
    """Raises a `ValueError` for a data flag the dataset does not read, which would be ignored without a word.

    (A file given without `--dataset=npz`, say, would train on the default
    digits.) Fields left at their defaults are not flags given. `load_dataset`
    checks this before loading anything.
    """
    default = DataConfig()
    for name, readers in _READ_BY.items():
      value = getattr(self, name)
      if value in (None, '') or str(value) == str(getattr(default, name)) or self.dataset in readers:
        continue
      which = ' (the default)' if self.dataset == default.dataset else ''
      raise ValueError(
        f'--{name}={value} is read only by --dataset={"/".join(readers)}; --dataset={self.dataset}{which} '
        f'does not read it. Name the dataset that does (--dataset={readers[0]}, say), or drop --{name}.'
      )
    if self.bins != default.bins and self.features != 'histogram':
      raise ValueError(f'--bins={self.bins} is read only with --features=histogram: give it, or drop --bins.')
    if self.test_path:
      _refuse_test_fraction(f'--test_path={self.test_path}', self)
    same = lambda a, b: os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))
    if self.test_path and self.data_path and same(self.test_path, self.data_path):
      raise ValueError(
        f'--test_path={self.test_path} is --data_path itself: the test metrics would be of rows the model '
        'trained on. Give a held-out file, or drop --test_path (a test split is then taken from the data).'
      )
    return self


# The data fields only some datasets read: `DataConfig.check_read`.
_READ_BY = {
  'data_path': ('npz', 'npy', 'csv'),
  'data_dir': ('cifar10', 'mnist'),
  'target_column': ('csv',),
  'delimiter': ('csv',),
  'num_examples': data.SYNTHETIC,
  'num_features': ('blobs', 'linreg'),
  'num_classes': ('blobs',),
}


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """What one run of `train_and_evaluate` does beside training; the run flags of `experiments/train.py`.

  Each field's metadata holds the help of its flag (and `lower_bound`, this record's one bound).
  """

  reference: bool = _field(
    False, 'Compute f* (L-BFGS, float64) first and record f − f* per epoch in metrics.jsonl.'
  )
  refit: bool = _field(
    False, 'After choosing the epoch count on validation, train again on train + val and save that.'
  )
  resume: bool = _field(False, 'Continue from --workdir/checkpoint.npz.')
  checkpoint_every: int = _field(
    0, 'Epochs between checkpoints; 0: every 10 s (and when the run stops), >= 0.', lower_bound=0
  )
  plots: bool = _field(True, 'Draw the pictures.')


def load_dataset(data_config, seed=0, dtype='float32', stream=False, progress=None, targets=None):
  """Loads and prepares the dataset `data_config` names; errors name the file.

  Args:
    data_config: a `DataConfig`.
    seed: seed of the synthetic data and the split.
    dtype: the training dtype the splits are prepared in.
    stream: with a memory-mapped file, prepare it for streaming (never copied).
    progress: called with a line of text on the memory and progress of a large load.
    targets: the loss's target kind (`'class'`, `'binary'`, `'real'`), if known:
      a regression loss reads a file's whole-number targets as real numbers,
      and a classification loss given real-valued targets names the first
      value that is not a label.

  Returns:
    A prepared `data.Dataset`.
  """

  # With several processes, one process's error here (a file it cannot read, say) stops every process.
  with datapath.together(f'loading {data_config.data_path or data_config.dataset}'):
    return _load_dataset(data_config.validate().check_read(), seed, dtype, stream, progress, targets)


def _refuse_test_fraction(held, d):
  """Raises a `ValueError` when `d` (a `DataConfig`) gives a --test_fraction beside a test split `held`
  of its own, which it would ignore."""
  if d.test_fraction != DataConfig().test_fraction:
    raise ValueError(
      f'{held} is the test split, so none is taken from the data: drop --test_fraction={d.test_fraction:g}.'
    )


def _check_labels(raw, d):
  """Refuses real-valued targets given to a classification loss, naming the file and the first non-label;
  one-hot rows, with the line that makes them labels."""
  y = np.asarray(raw.y)  # finite: `data.load` checked it
  where = d.labels_path or d.data_path or d.dataset
  one_hot = y.ndim == 2 and y.shape[1] > 1 and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()
  if raw.kind == 'real' and one_hot:
    raise ValueError(
      f'{where}: the targets are one-hot rows [{y.shape[0]}, {y.shape[1]}], and a classification loss takes '
      'one class index a row [N]: save y.argmax(axis=1) as y.'
    )
  if raw.kind != 'real' or y.ndim != 1:
    return  # class labels; other [N, K] targets are refused by the loss check with their shape
  i = validation.first_non_integer(y)
  if i is None:
    return  # whole numbers read as real targets (a bundled regression set): the loss check says so
  raise ValueError(
    f'{where}: a classification loss needs integer class labels, got '
    f'{float(y[i])} at index {i}; for real-valued targets use a regression loss (--loss=l2, say).'
  )


def _load_dataset(d, seed, dtype, stream, progress, targets=None):
  raw = data.load(
    d.dataset,
    data_dir=d.data_dir,
    data_path=d.data_path,
    target_column=d.target_column,
    labels_path=d.labels_path,
    num_examples=d.num_examples,
    num_features=d.num_features,
    num_classes=d.num_classes,
    seed=seed,
    check_values=False,  # prepare's one read of the file checks every value
    test_path=d.test_path,
    test_labels_path=d.test_labels_path,
    delimiter={'auto': None, 'tab': '\t'}.get(d.delimiter, d.delimiter),
    weight_column=d.weight_column,
    real_targets=targets == 'real',
  )
  if raw.test is not None:  # a file of its own test split (a --test_path is refused before the load)
    held = f'{d.data_path} (its x_test and y_test)' if d.data_path else f"--dataset={d.dataset}'s test set"
    _refuse_test_fraction(held, d)
  if targets in ('class', 'binary'):
    _check_labels(raw, d)
  if d.features == 'histogram':
    raw = histogram_features(raw, d.bins)
  # A memory map to stream stays in its file; anything else is split and prepared in memory.
  return preparation.prepare(
    raw,
    d.dataset,
    d.val_fraction,
    d.test_fraction,
    d.preprocess,
    seed=seed,
    dtype=np.dtype(dtype),
    stream_file=stream,
    progress=progress,
    class_weight=None if d.class_weight == 'none' else d.class_weight,
  )


finite_json = files.finite_json  # non-finite floats as None: what JSON holds, as `null`
write_json = files.write_json  # valid JSON, atomically, never through a link


def progress_line(metrics, epochs):
  """The one line of progress a run prints after an epoch (or L-BFGS iteration) of at most `epochs`."""
  if 'learning_rate' not in metrics:  # an L-BFGS iteration
    return (
      f'iteration {metrics["epoch"]:>4}/{epochs}  loss {metrics["train_loss"]:.6g}  '
      f'grad norm {metrics["train_grad_norm"]:.3g}  {metrics["fevals"]} evaluations'
    )
  if not metrics.get('evaluated', True):  # only the training pass's own loss this epoch
    return (
      f'epoch {metrics["epoch"]:>4}/{epochs}  pass loss {metrics["train_pass_loss"]:.4f}  '
      f'lr {metrics["learning_rate"]:.3g}  {metrics["examples_per_s"]:,.0f} ex/s'
    )
  split = 'val' if 'val_loss' in metrics else 'train'
  quality = (
    f'{split} acc {100 * metrics[f"{split}_accuracy"]:5.1f}%'
    if f'{split}_accuracy' in metrics
    else f'{split} mse {metrics[f"{split}_mse"]:.4g}'
  )
  return (
    f'epoch {metrics["epoch"]:>4}/{epochs}  loss {metrics["train_loss"]:.4f}  {quality}  '
    f'lr {metrics["learning_rate"]:.3g}  {metrics["examples_per_s"]:,.0f} ex/s'
  )


def step_size_line(found):
  """The line that says which step `--learning_rate=auto` took, and how it was found."""
  return f'learning_rate=auto: {found["learning_rate"]:.3g} ({found["method"]})'


def saved_metrics(summary):
  """`(metrics, what)` of the model params.npz holds: the last epoch's (`what` None), the best epoch's
  (with patience) or the refit's (`--refit`), as `summary['saved_params']` says."""
  saved = summary.get('saved_params', 'final')
  if saved == 'refit':
    return summary['refit']['final'], 'the refit on train + validation, saved'
  if saved == 'best':
    return summary['best'], f'epoch {summary["best_epoch"]}, the best on validation, saved'
  return summary['final'], None


def last_line(summary, workdir):
  """The line a finished run ends with: the held-out metric of the saved model (and which model, when
  it is not the last epoch's), length, time, why it stopped, outputs."""
  metrics, what = saved_metrics(summary)
  # The held-out number if there is one (test_fraction=0 leaves none; a refit trains on validation).
  key = next(
    f'{split}_{m}'
    for split in ('test', 'val', 'train')
    for m in ('accuracy', 'mse')
    if f'{split}_{m}' in metrics
  )
  why = summary.get('stop_why') or summary['stop_reason'].replace('_', ' ')
  return (
    f'{key}: {_figure(metrics[key])}  ({f"{what}; " if what else ""}'
    f'{summary["epochs_run"]} {"iterations" if summary["solver"] else "epochs"}, '
    f'{summary["seconds"]:.1f} s, stopped: {why}'
    f'{", already before this resume" if summary.get("already_done") else ""}); outputs in {workdir}'
  )


def _figure(value):
  """A metric as the last line prints it: four decimals, or four significant digits below 1e-3 (an
  error in small units, which four decimals would show as 0.0000)."""
  return f'{value:.4g}' if 0 < abs(value) < 1e-3 else f'{value:.4f}'


def _outcome(result):
  """What the caller of `train_and_evaluate` needs to know of how the fit ended."""
  return {
    'epochs_run': len(result.history),
    'stop_reason': result.stop_reason,
    'plateau_gain': result.plateau_gain,  # training/plateau.py: None where no plateau was measured
    'solver': result.solver,
    'interrupted': result.interrupted,
  }


# Every file a run may write to its workdir.
OUTPUTS = (
  'metrics.jsonl',
  'summary.json',
  'params.npz',
  resume.CHECKPOINT,
  'curves.png',
  'templates.png',
  'regions.png',
)


def check_outputs(workdir):
  """Raises, naming it, if an output name of a run (`OUTPUTS`) is a folder in `workdir`; a link there, to a
  folder too, is replaced as every output's link is, and its target left alone."""
  for name in OUTPUTS:
    path = os.path.join(workdir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      raise ValueError(
        f'{path} is a folder, where the run writes its file {name}; move it or use another --workdir.'
      )


def train_and_evaluate(
  config,
  data_config,
  workdir,
  options: RunOptions = RunOptions(),
  *,
  write_outputs: bool = True,
  on_epoch: Callable[[dict], None] | None = None,
  progress: Callable[[str], None] | None = None,
  record: Mapping[str, Any] | None = None,
  painter: Any = None,
) -> dict:
  """Loads the data, trains, evaluates, and writes every output of the run to `workdir`.

  Args:
    config: a `config.TrainConfig`.
    data_config: a `DataConfig`.
    workdir: the folder of the outputs and of checkpoint.npz (it must exist).
    options: `RunOptions`: f*, refit, resume, checkpoint interval, pictures.
    write_outputs: `False` in the processes other than process 0 of a multi-host run: they train,
      read process 0's checkpoint when resuming, and write nothing.
    on_epoch: called with each epoch's metrics (as written to metrics.jsonl) after they are written.
    progress: called with a line of text on the memory and progress of a large load.
    record: the command's settings (e.g. its flags), kept in summary.json under "flags".
    painter: a `painter.Painter` that draws the pictures in its own process (which this call ends);
      `None`: they are drawn here.

  Returns:
    The summary (as written to summary.json); it holds "final", "epochs_run", "stop_reason",
    "solver" and "interrupted" in every process. Raises `ValueError` on bad input (an output name of
    `OUTPUTS` that is a folder in `workdir` among it) before any work,
    and `results.Diverged` (after writing a summary.json that says so) when training diverges.
  """

  if write_outputs:
    check_outputs(workdir)
  try:
    return _train_and_evaluate(
      config, data_config, workdir, options, write_outputs, on_epoch, progress, record, painter
    )
  except results.Diverged as e:
    if write_outputs:
      write_json(os.path.join(workdir, 'summary.json'), {'stop_reason': 'diverged', 'error': str(e)})
    raise
  finally:
    if painter is not None:
      painter.close()


def _train_and_evaluate(
  cfg, data_config, workdir, options, write_outputs, on_epoch, progress, record, painter
):
  start = time.perf_counter()
  dataset, f_star = _load_and_check(cfg, data_config, options, progress)
  metrics_path = _start_metrics(workdir, options, write_outputs, f_star)
  result = _fit(cfg, dataset, workdir, options, write_outputs, metrics_path, f_star, on_epoch)
  given = cfg  # 'auto' stays: the refit derives its steps as this fit did, at its start and after epoch 1
  if result.learning_rate_info:
    cfg = dataclasses.replace(cfg, learning_rate=result.learning_rate)
  chosen = result.best_params if cfg.patience else result.params
  refitted, interrupted = None, result.interrupted
  if options.refit and not interrupted:  # a run stopped before its refit refits when resumed
    again, refitted = refit.refit(given, dataset, result)
    if again.interrupted:  # stopped during the refit: its half-trained model is no result
      interrupted, refitted = True, None
    else:
      chosen = again.params
  final, best = train.evaluate_many(cfg, dataset, [result.params, result.best_params], checked=True)
  if not write_outputs:
    return {'final': final, **_outcome(result), 'interrupted': interrupted}
  w_raw, b_raw = train.raw_params(chosen, dataset)
  files.replace(os.path.join(workdir, 'params.npz'), lambda f: np.savez(f, W=w_raw, b=b_raw), binary=True)
  summary = {
    'dataset': dataset.name,
    'loss': cfg.loss,
    'loss_hparams': cfg.resolved_loss_hparams(),
    'class_names': list(dataset.class_names) if dataset.class_names else None,
    'final': final,
    'best': best,
    'best_epoch': result.best_epoch,
    'epochs_run': len(result.history),
    'saved_params': 'refit' if refitted else ('best' if cfg.patience else 'final'),
    'stop_reason': result.stop_reason,
    'plateau_gain': result.plateau_gain,  # training/plateau.py: None where no plateau was measured
    'stop_why': stop_reasons.explain(
      cfg,
      result.stop_reason,
      records.gradient_scale(dataset, cfg.loss_record, cfg.resolved_loss_hparams()),
      result.plateau_gain,
      data_config.preprocess,
    ),
    'learning_rate': result.learning_rate,
    'learning_rate_found': result.learning_rate_info,
    'solver': result.solver,
    'refit': refitted,
    'f_star': f_star,
    # Regression: the objective (loss, f*) is on standardized targets, y' = (y - shift) / scale; the MSE,
    # the MAE and params.npz are in the targets' units.
    'target_shift': None if dataset.target_shift is None else np.asarray(dataset.target_shift).tolist(),
    'target_scale': None if dataset.target_scale is None else np.asarray(dataset.target_scale).tolist(),
    'stopped_early': result.stopped_early,
    'interrupted': interrupted,
    'resumed_from_epoch': result.resumed_from,
    'already_done': result.already_done,
    'streamed': result.streamed,
    'seconds': time.perf_counter() - start,
    'flags': dict(record or {}),
    'versions': versions(),
  }
  write_json(os.path.join(workdir, 'summary.json'), summary)
  evaluated = [m for m in result.history if m.get('evaluated', True)]
  if options.plots and evaluated and not interrupted:  # a stopped run exits within its grace period
    if painter is None:
      _draw(_draw_here, cfg, dataset, evaluated, chosen, w_raw, b_raw, workdir)
    else:
      _draw(painter.draw, cfg, dataset, evaluated, chosen, w_raw, b_raw, workdir)
      painter.finish()
  return summary


def _load_and_check(cfg, data_config, options, progress):
  """The prepared dataset, checked against the run before any training, and f* if `options` asks for it."""
  data_config.validate()
  dataset = load_dataset(
    data_config,
    seed=cfg.seed,
    dtype=cfg.dtype,
    stream=cfg.stream,
    progress=progress,
    targets=cfg.loss_record.targets,
  )
  train.check_fit(cfg, dataset)  # each process checks its own rows; one's error stops every process
  if options.refit:
    refit.check_refit(dataset)
  f_star = None
  if options.reference:
    f_star = lbfgs.optimum(cfg, dataset)[0]
  return dataset, f_star


def _start_metrics(workdir, options, write_outputs, f_star=None):
  """Starts metrics.jsonl afresh (or from the checkpoint's history when resuming); returns its path.

  Every process runs the same fits and evaluations (a streamed pass over several processes adds its
  sums over them, so each must take part); only the writing is process 0's.
  """
  metrics_path = os.path.join(workdir, 'metrics.jsonl')
  ckpt = os.path.join(workdir, resume.CHECKPOINT)
  with datapath.together(f'{workdir}: preparing the outputs'):  # process 0's error here stops every process
    if write_outputs:
      # The workdir's files belong to one run: the last run's outputs go before this one writes any. A
      # resume continues the run they belong to, and one refused (other settings or data) deletes nothing.
      resuming = options.resume and os.path.exists(ckpt)
      if not resuming:
        files.remove_outputs(workdir, OUTPUTS)
      meta = checkpoint.read(ckpt)[1] if resuming else {'history': []}
      if 'history' not in meta:  # a sweep's or a search's, under this name
        raise ValueError(f'{ckpt}: not a checkpoint of train; run without --resume to start over.')
      history = meta['history']
      files.write_text(
        metrics_path,
        ''.join(json.dumps(finite_json(_gap(m, f_star)), allow_nan=False) + '\n' for m in history),
      )
  return metrics_path


def _gap(metrics, f_star):
  """`metrics` with `f_minus_f_star` where f* is known and the epoch was evaluated, and without it where
  f* is not: a run resumed with or without `--reference` records it for every epoch alike."""
  metrics = {k: v for k, v in metrics.items() if k != 'f_minus_f_star'}
  if f_star is not None and 'train_loss' in metrics:  # evaluated epochs (see eval_every)
    metrics['f_minus_f_star'] = metrics['train_loss'] - f_star
  return metrics


def _fit(cfg, dataset, workdir, options, write_outputs, metrics_path, f_star, on_epoch):
  """Trains, adding each epoch's metrics (and f − f* where known) to metrics.jsonl; `train.fit`'s result."""

  def write_epoch(metrics):
    metrics.update(_gap(metrics, f_star))  # f − f* where known
    files.append(metrics_path, json.dumps(finite_json(metrics), allow_nan=False) + '\n')
    if on_epoch is not None:
      on_epoch(metrics)

  return train.fit(
    cfg,
    dataset,
    workdir=workdir,
    resume=options.resume,
    on_epoch=write_epoch if write_outputs else None,
    checkpoint_every=options.checkpoint_every,
  )


def _draw_here(name, *args):
  from linear_jax.runs import plots  # pylint: disable=import-outside-toplevel  (matplotlib: only to draw)

  getattr(plots, name)(*args)


def _draw(draw, cfg, dataset, evaluated, chosen, w_raw, b_raw, workdir):
  """curves.png; templates.png for image data of a classifier; regions.png for 2-D data; each by
  `draw(name, *args)`, which runs `plots.name(*args)` here or in a painter's process."""
  draw('curves', evaluated, os.path.join(workdir, 'curves.png'), f'{cfg.loss} on {dataset.name}')
  if dataset.image_shape is not None and dataset.kind == 'class' and cfg.loss_record.targets == 'class':
    w = chosen if chosen.b is not None else model.unfold_bias(chosen)
    draw(
      'templates',
      np.asarray(w.W),
      dataset.image_shape,
      os.path.join(workdir, 'templates.png'),
      dataset.class_names,
    )
  if dataset.num_features == 2:
    draw(
      'decision_regions',
      w_raw,
      b_raw,
      # The points in raw units (a `stream.prepare`d dataset holds them raw already).
      np.asarray(dataset.x_train)
      if preparation.holds_raw_features(dataset)
      else dataset.shift + dataset.scale * dataset.x_train,
      dataset.y_train,
      os.path.join(workdir, 'regions.png'),
    )


def versions():
  """The versions of Python, JAX, optax and NumPy, and the device a run used."""
  import platform  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel

  return {
    'python': platform.python_version(),
    'jax': jax.__version__,
    'optax': optax.__version__,
    'numpy': np.__version__,
    'device': str(jax.devices()[0].device_kind),
    'backend': jax.default_backend(),
  }
