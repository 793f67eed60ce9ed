r"""Trains a linear classifier or regressor; the main job of linear_jax.

    python -m experiments.train
    python -m experiments.train --dataset=breast_cancer --loss=hinge --optimizer=adam
    python -m experiments.train --optimizer=lbfgs --tol=1e-6            # full-batch L-BFGS to ‖∇f‖∞ ≤ tol
    python -m experiments.train --reference --tol_on=none --max_epochs=50  # f − f* per epoch
    python -m experiments.train --refit   # choose the epoch count on validation, retrain on train + val
    python -m experiments.train --dataset=cifar10 --data_dir=~/data/cifar-10-batches-py
    python -m experiments.train --parallel=shard_map          # every local device
    python -m experiments.train --parallel=shard_map --coordinator_address=host0:1234 \
        --num_processes=2 --process_id=0                      # and --process_id=1 on host 1

Leaves in --workdir: metrics.jsonl (one line per epoch: train_pass_loss, the training pass's
own loss, always; the train_* / val_* metrics of a full evaluation where "evaluated" is true,
every --eval_every epochs and at the last), summary.json,
params.npz (W [C, D] and b [C] in raw input units: scores = x @ W.T + b),
curves.png, templates.png (image data), regions.png (2-D data) and
checkpoint.npz (--resume continues from it, bit-for-bit). Training stops when
it has converged (--tol, --tol_on, --n_iter_no_change) or after --max_epochs;
summary.json's stop_reason and the last printed line say which.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

from . import common
from . import longrun

common.define_objective_flags()
common.define_data_flags()
common.define_training_flags(max_epochs=True)
common.define_convergence_flags()
flags.DEFINE_bool(
  'reference', False, 'Compute f* (L-BFGS, float64) first and record f − f* per epoch in metrics.jsonl.'
)
flags.DEFINE_bool(
  'refit', False, 'After choosing the epoch count on validation, train again on train + val and save that.'
)
flags.DEFINE_string('workdir', 'workdir/train', 'Where outputs and checkpoints go.')
flags.DEFINE_bool('resume', False, 'Continue from --workdir/checkpoint.npz.')
flags.DEFINE_integer('checkpoint_every', 1, 'Epochs between checkpoints.', lower_bound=1)
flags.DEFINE_bool('quiet', False, 'No progress display.')
flags.DEFINE_bool('plots', True, 'Draw the pictures.')

FLAGS = flags.FLAGS


def _write_json(path, obj):
  with open(path, 'w') as f:
    json.dump(obj, f, indent=1, allow_nan=False)  # a NaN must never reach a file


def _progress(metrics):
  if 'learning_rate' not in metrics:  # an L-BFGS iteration
    print(
      f'iteration {metrics["epoch"]:>4}/{FLAGS.max_epochs}  loss {metrics["train_loss"]:.6g}  '
      f'grad norm {metrics["train_grad_norm"]:.3g}  {metrics["fevals"]} evaluations',
      flush=True,
    )
    return
  if not metrics.get('evaluated', True):  # only the training pass's own loss this epoch
    print(
      f'epoch {metrics["epoch"]:>4}/{FLAGS.epochs}  pass loss {metrics["train_pass_loss"]:.4f}  '
      f'lr {metrics["learning_rate"]:.3g}  {metrics["examples_per_s"]:,.0f} ex/s',
      flush=True,
    )
    return
  split = 'val' if 'val_loss' in metrics else 'train'
  quality = (
    f'{split} acc {100 * metrics[f"{split}_accuracy"]:5.1f}%'
    if f'{split}_accuracy' in metrics
    else f'{split} mse {metrics[f"{split}_mse"]:.4g}'
  )
  print(
    f'epoch {metrics["epoch"]:>4}/{FLAGS.epochs}  loss {metrics["train_loss"]:.4f}  {quality}  '
    f'lr {metrics["learning_rate"]:.3g}  {metrics["examples_per_s"]:,.0f} ex/s',
    flush=True,
  )


def run(workdir):
  """Trains as the flags say and writes every output; returns the summary."""
  from linear_jax import model  # pylint: disable=import-outside-toplevel
  from linear_jax import plots  # pylint: disable=import-outside-toplevel
  from linear_jax import refit  # pylint: disable=import-outside-toplevel
  from linear_jax import solvers  # pylint: disable=import-outside-toplevel
  from linear_jax import train  # pylint: disable=import-outside-toplevel

  start = time.perf_counter()
  cfg = common.train_config(FLAGS)
  dataset = common.load_dataset(FLAGS)
  train.check_fit(cfg, dataset)
  if FLAGS.refit:
    refit.check_refit(dataset)
  f_star = None
  if FLAGS.reference:
    f_star = solvers.optimum(cfg, dataset)[0]
  if workdir is None:  # not process 0 of a multi-host run: train, read process 0's checkpoint, write nothing
    result = train.fit(
      cfg, dataset, workdir=FLAGS.workdir, resume=FLAGS.resume, checkpoint_every=FLAGS.checkpoint_every
    )
    return {'final': train.evaluate(cfg, dataset, result.params)}, result
  metrics_path = os.path.join(workdir, 'metrics.jsonl')
  if not FLAGS.resume and os.path.exists(os.path.join(workdir, train.CHECKPOINT)):
    os.remove(os.path.join(workdir, train.CHECKPOINT))

  def on_epoch(metrics):
    if f_star is not None and 'train_loss' in metrics:  # evaluated epochs (see --eval_every)
      metrics['f_minus_f_star'] = metrics['train_loss'] - f_star
    with open(metrics_path, 'a') as f:
      f.write(json.dumps(metrics, allow_nan=False) + '\n')
    if not FLAGS.quiet:
      _progress(metrics)

  # Start metrics.jsonl afresh, or from the checkpoint's history when resuming.
  history = []
  ckpt = os.path.join(workdir, train.CHECKPOINT)
  if FLAGS.resume and os.path.exists(ckpt):
    history = json.loads(str(np.load(ckpt, allow_pickle=False)['meta']))['history']
  with open(metrics_path, 'w') as f:
    f.writelines(json.dumps(m, allow_nan=False) + '\n' for m in history)

  result = train.fit(
    cfg,
    dataset,
    workdir=workdir,
    resume=FLAGS.resume,
    on_epoch=on_epoch,
    checkpoint_every=FLAGS.checkpoint_every,
  )
  chosen = result.best_params if cfg.patience else result.params
  refitted = None
  if FLAGS.refit:
    again, refitted = refit.refit(cfg, dataset, result)
    chosen = again.params
  w_raw, b_raw = train.raw_params(chosen, dataset)
  np.savez(os.path.join(workdir, 'params.npz'), W=w_raw, b=b_raw)
  final, best = train.evaluate_many(cfg, dataset, [result.params, result.best_params])
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
    'solver': result.solver,
    'refit': refitted,
    'f_star': f_star,
    'stopped_early': result.stopped_early,
    'interrupted': result.interrupted,
    'resumed_from_epoch': result.resumed_from,
    'streamed': result.streamed,
    'seconds': time.perf_counter() - start,
    'flags': {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])}
    | {f.name: f.value for f in FLAGS.get_key_flags_for_module(common)},
    'versions': common.versions(),
  }
  _write_json(os.path.join(workdir, 'summary.json'), summary)
  evaluated = [m for m in result.history if m.get('evaluated', True)]
  if FLAGS.plots and evaluated and not result.interrupted:  # a stopped run exits within its grace period
    plots.curves(evaluated, os.path.join(workdir, 'curves.png'), f'{cfg.loss} on {dataset.name}')
    if dataset.image_shape is not None and dataset.kind == 'class' and cfg.loss_record.targets == 'class':
      w = chosen if chosen.b is not None else model.unfold_bias(chosen)
      plots.templates(
        np.asarray(w.W), dataset.image_shape, os.path.join(workdir, 'templates.png'), dataset.class_names
      )
    if dataset.num_features == 2:
      plots.decision_regions(
        w_raw,
        b_raw,
        dataset.shift + dataset.scale * dataset.x_train,
        dataset.y_train,
        os.path.join(workdir, 'regions.png'),
      )
  return summary, result


def main(argv):
  del argv
  common.start(FLAGS)
  import jax  # pylint: disable=import-outside-toplevel

  from linear_jax import train  # pylint: disable=import-outside-toplevel

  main_process = jax.process_index() == 0  # only process 0 writes outputs and checkpoints
  workdir = common.prepare_workdir(FLAGS.workdir) if main_process else None

  try:
    with longrun.guarded(workdir):
      summary, result = run(workdir)
  except train.Diverged as e:
    if workdir:
      _write_json(os.path.join(workdir, 'summary.json'), {'stop_reason': 'diverged', 'error': str(e)})
    sys.exit(f'Training diverged: {e}\nstopped: diverged')
  except ValueError as e:
    sys.exit(f'Error: {e}')
  if result.interrupted:
    checkpoint = os.path.join(FLAGS.workdir, train.CHECKPOINT)
    longrun.exit_stopped(__spec__.name, checkpoint, f'epoch {len(result.history)} of {FLAGS.epochs}')
  if not main_process:
    return
  final = summary['final']
  # The held-out number if there is one (--test_fraction=0 leaves none).
  key = next(
    f'{split}_{m}'
    for split in ('test', 'val', 'train')
    for m in ('accuracy', 'mse')
    if f'{split}_{m}' in final
  )
  print(
    f'{key}: {final[key]:.4f}  ({summary["epochs_run"]} {"iterations" if result.solver else "epochs"}, '
    f'{summary["seconds"]:.1f} s, stopped: {result.stop_reason.replace("_", " ")}); outputs in {workdir}'
  )


if __name__ == '__main__':
  app.run(main)
