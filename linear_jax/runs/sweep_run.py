"""A whole learning-rate sweep as one call: trains the grid, writes sweep.json, csv files and pictures.

`sweep_and_write(config, dataset, workdir, lrs, regs)` is the library half of
`experiments/lr_sweep.py`'s grid sweeps; `path_and_write(config, dataset, workdir,
regs, max_iter)` is the half of its L-BFGS regularization paths (`paths.py`),
writing path.json, path.csv and path.png.
"""

import csv
import os

import numpy as np

from linear_jax.runs import experiment
from linear_jax.runs import plots
from linear_jax.training import files
from linear_jax.training import preemption
from linear_jax.training import refit as refit_lib
from linear_jax.training import train
from linear_jax.tuning import paths
from linear_jax.tuning import sweep
from linear_jax.tuning import sweep_state

# What a sweep is judged and pictured by: the first of these that it has.
METRICS = ('val_accuracy', 'val_mse', 'train_accuracy', 'train_mse')
# Every file `sweep_and_write` writes (besides its checkpoint).
SWEEP_OUTPUTS = ('sweep.json', 'sweep.csv', 'settings.csv', 'heatmap.png', 'loss_vs_lr.png', 'curves.png')
# Every file `path_and_write` writes. A workdir's outputs are one run's: each of the two writers removes both.
PATH_OUTPUTS = ('path.json', 'path.csv', 'path.png')


def write_csv(path, rows):
  """One row per dict of `rows` (their keys the header); `None` is written as an empty field."""

  def write(f):
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({k: '' if v is None else v for k, v in r.items()} for r in rows)

  files.replace(path, write)


def sweep_and_write(
  config,
  dataset,
  workdir,
  lrs,
  regs,
  *,
  loss_hparams=None,
  momenta=None,
  seeds=None,
  retrain_best=False,
  checkpoint_path=None,
  resume=False,
  **run_kwargs,
):
  """Trains every setting of the grid together and writes the sweep's outputs to `workdir`.

  Args:
    config: a `config.TrainConfig`; the grid replaces its learning rate, reg (and what else it varies).
    dataset: a prepared `data.Dataset`.
    workdir: the folder of sweep.json, sweep.csv (one row per model), settings.csv (with `seeds`: each
      setting's mean and standard deviation over them), heatmap.png, loss_vs_lr.png and curves.png.
    lrs, regs: the learning rates `[L]` and regularization strengths `[R]`.
    loss_hparams: `{name: [values]}` of loss hyperparameters to sweep too.
    momenta, seeds: further axes (settings are judged by their mean over the seeds).
    retrain_best: train the best setting alone and record its test metrics.
    checkpoint_path: the sweep's checkpoint (`None`: none); removed first unless `resume`.
    resume: continue from `checkpoint_path` (bit for bit).
    **run_kwargs: `chunk_size`, `on_epoch`, `checkpoint_every` of `sweep.run_sweep`.

  Returns:
    The dict written to sweep.json; its "best" is `None` when every model diverged.
  """

  loss_axes = dict(loss_hparams or {})
  axes = {'lrs': lrs, 'regs': regs, **loss_axes, 'momenta': momenta or (), 'seeds': seeds or ()}
  for name, given in axes.items():  # the pictures are [L] x [R] grids: one point per value
    values = np.asarray(given).ravel().tolist()
    if len(set(values)) != len(values):
      raise ValueError(f'sweep_and_write: {name} {values} repeat a value; each is one point of the grid.')
  settings = sweep.grid(lrs, regs, momenta=momenta, seeds=seeds, loss_hparams=loss_axes)
  sweep.check_grid(settings, config.loss, config.optimizer, config.dtype)  # before the last run's files go
  # The workdir's files belong to one run: the last sweep's outputs go before this one writes any. A
  # resume continues the run they belong to, and one refused (other settings or data) deletes nothing.
  files.remove_outputs(workdir, PATH_OUTPUTS)  # never this sweep's, resumed or not
  if not (resume and checkpoint_path and os.path.exists(checkpoint_path)):
    files.remove_outputs(workdir, SWEEP_OUTPUTS)
  if not resume and checkpoint_path:
    files.remove_outputs(*os.path.split(os.path.abspath(checkpoint_path)))
  result = sweep.run_sweep(
    config, dataset, settings, checkpoint_path=checkpoint_path, resume=resume, **run_kwargs
  )
  out, best = _summary(config, dataset, result, seeds)
  if best is not None and retrain_best:
    alone = sweep.config_for(config, settings[best])
    again = train.fit(alone, dataset)
    if again.interrupted:  # a stop signal: its half-trained model is no result, and a resume retrains it
      raise preemption.Stopped(checkpoint_path, 'the sweep, while retraining its best setting alone')
    out['best_retrained'] = train.evaluate(alone, dataset, again.params)
  _write_tables(workdir, out, seeds)
  _write_pictures(workdir, result, settings, lrs, regs, loss_axes, momenta, seeds)
  return out


def _summary(config, dataset, result, seeds):
  """`(out, best)`: sweep.json's dict, and the index into the settings of the best model (or `None`).

  With `seeds`, settings are judged by their mean over the seeds, and `best`
  is the first model of the best setting.
  """
  rows = result.rows()
  groups = result.seed_groups()
  out = {
    'dataset': dataset.name,
    'loss': config.loss,
    'loss_hparams': config.resolved_loss_hparams(),
    'num_models': len(rows),
    'epochs': config.epochs,
    'seconds': result.seconds,
    'models': rows,
  }
  if seeds is None:
    best = result.best_index()
    out['best'] = None if best is None else rows[best]
  else:  # settings judged by their mean over the seeds
    out['seeds'] = list(seeds)
    out['settings'] = result.setting_rows()
    best_group = result.best_setting()
    out['best'] = None if best_group is None else out['settings'][best_group]
    best = None if best_group is None else groups[best_group][0]
  out['versions'] = experiment.versions()
  return out, best


def _write_tables(workdir, out, seeds):
  """Writes sweep.json (`out`), sweep.csv (one row per model) and, with `seeds`, settings.csv."""
  files.write_json(os.path.join(workdir, 'sweep.json'), out)
  write_csv(os.path.join(workdir, 'sweep.csv'), out['models'])
  if seeds is not None:
    write_csv(os.path.join(workdir, 'settings.csv'), out['settings'])


def _write_pictures(workdir, result, settings, lrs, regs, loss_axes, momenta, seeds):
  """Draws heatmap.png, loss_vs_lr.png and curves.png of the sweep over the `[L] × [R]` grid.

  Where loss hyperparameters or momentum vary too, at the first value of
  each; every setting is its mean over the seeds.
  """
  groups = result.seed_groups()
  firsts = {**{n: v[0] for n, v in loss_axes.items()}, **({'momentum': momenta[0]} if momenta else {})}
  first = [g for g in groups if all(settings[g[0]][n] == v for n, v in firsts.items())]
  shape = (len(lrs), len(regs))
  metric = next(m for m in METRICS if m in result.best)
  mean = lambda v: np.array([np.mean(v[g]) for g in first])
  label = metric.replace('_', ' ') + (f', mean of {len(seeds)} seeds' if seeds else '')
  values = mean(result.best[metric]).reshape(shape).T
  plots.sweep_heatmap(lrs, regs, values, os.path.join(workdir, 'heatmap.png'), label)
  final_loss = mean(result.final['train_loss']).reshape(shape).T
  plots.loss_vs_lr(lrs, regs, final_loss, os.path.join(workdir, 'loss_vs_lr.png'))
  curves = np.stack([h['train_loss'] for h in result.history], 1)[[g[0] for g in first]]
  labels = [f'lr={s["learning_rate"]:.2g} reg={s["reg"]:g}' for s in (settings[g[0]] for g in first)]
  plots.sweep_curves(curves, labels, os.path.join(workdir, 'curves.png'))


def path_and_write(config, dataset, workdir, regs, max_iter, refit=False):
  """The L-BFGS regularization path over `regs`, chosen on validation; writes its outputs to `workdir`.

  Args:
    config: a `config.TrainConfig` (its loss, penalty and tolerance; `reg` is replaced by each of `regs`).
    dataset: a prepared `data.Dataset`.
    workdir: the folder of path.json, path.csv (one row per reg) and path.png.
    regs: the regularization strengths `[R]`.
    max_iter: L-BFGS iterations per reg at most.
    refit: scikit-learn's refit: the chosen reg trained again on train + validation (`refit.py`).

  Returns:
    The dict written to path.json.
  """
  result = paths.fit_path(config, dataset, regs, max_iter=max_iter)
  rows = result.rows()
  best = result.best_index()
  metric = next(m for m in METRICS if m in result.metrics)
  out = {
    'dataset': dataset.name,
    'loss': config.loss,
    'optimizer': 'lbfgs',
    'num_models': len(rows),
    'fevals': result.fevals,
    'seconds': result.seconds,
    'chosen_by': metric,
    'models': rows,
    'best': rows[best],
    'versions': experiment.versions(),
  }
  if refit:
    out['refit'] = refit_lib.refit_path(config, dataset, result, max_iter=max_iter)[1]
  # A sweep's tables beside a path misread, and its checkpoint would resume a sweep whose tables are gone.
  files.remove_outputs(workdir, SWEEP_OUTPUTS + PATH_OUTPUTS + (sweep_state.FILE,))
  files.write_json(os.path.join(workdir, 'path.json'), out)
  write_csv(os.path.join(workdir, 'path.csv'), rows)
  label = metric.replace('_', ' ')
  plots.regularization_path(
    result.regs, result.metrics[metric], result.weight_norm, os.path.join(workdir, 'path.png'), label
  )
  return out


def progress_line(epoch, epochs, start, k, total, metrics, dead):
  """The line a sweep prints after an epoch of models `start + 1 .. start + k` of `total`."""
  split = 'val' if 'val_loss' in metrics else 'train'
  key = f'{split}_accuracy' if f'{split}_accuracy' in metrics else f'{split}_mse'
  vals = np.asarray(metrics[key], np.float64)
  chunk = f' models {start + 1}-{start + k} of {total}' if k < total else f' {total} models'
  best = ''  # every model diverged: no best
  if not np.isnan(vals).all():
    best = f', best {key} {np.nanmax(vals) if key.endswith("accuracy") else np.nanmin(vals):.4f}'
  return f'epoch {epoch:>4}/{epochs}{chunk}: {int((~dead).sum())} alive{best}'


def _refit_line(refit):
  """`--refit`'s line: the chosen reg solved again on train + validation, and its test metric."""
  if not refit:
    return []
  said = f'refit on train + validation ({refit["train_examples"]} rows) at reg={refit["reg"]:g}'
  return [_tested(said, refit['final'])]


def _tested(said, metrics):
  """`said`, then the test metrics of `metrics` (or that there is no test split to measure it on)."""
  tested = ', '.join(f'{k}={v:.4f}' for k, v in metrics.items() if k.startswith('test'))
  return f'{said}: {tested}' if tested else f'{said} (no test split to measure it on)'


def result_lines(out, workdir, varied=()):
  """The lines a finished sweep (or L-BFGS path) ends with (only the first if every model diverged).

  `varied` names the loss hyperparameters the sweep varied, shown with the best setting.
  """
  if out.get('optimizer') == 'lbfgs':
    b = out['best']
    return [
      f'{out["num_models"]} regs by L-BFGS in {out["seconds"]:.2f} s ({out["fevals"]} evaluations of all); '
      f'{sum(r["converged"] for r in out["models"])} converged',
      f'best: reg={b["reg"]:g} {out["chosen_by"]}={b[out["chosen_by"]]:.4f}; outputs in {workdir}',
      *_refit_line(out.get('refit')),
    ]
  diverged = sum(r['diverged_step'] is not None for r in out['models'])
  lines = [
    f'{out["num_models"]} models, {out["epochs"]} epochs in {out["seconds"]:.2f} s; {diverged} diverged'
  ]
  if out['best'] is None:
    return lines
  b, suffix = out['best'], '_mean' if 'seeds' in out else ''
  metric = next(f'best_{m}' for m in METRICS if f'best_{m}{suffix}' in b)
  value = f'{b[metric + suffix]:.4f}'
  if 'seeds' in out:
    value += f' ± {b[metric + "_std"]:.4f} over {len(out["seeds"])} seeds'
  shown = ''.join(f' {n}={b[n]:g}' for n in varied)
  lines.append(f'best: learning_rate={b["learning_rate"]:.4g} reg={b["reg"]:g}{shown} {metric}={value}')
  if 'best_retrained' in out:
    lines.append(_tested('best retrained alone', out['best_retrained']))
  return [*lines, f'outputs in {workdir}']
