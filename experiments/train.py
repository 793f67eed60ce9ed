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

The run itself is `linear_jax.runs.experiment.train_and_evaluate`; this file turns
the flags into its `TrainConfig`, `DataConfig` and `RunOptions`.
"""

import os
import sys

from absl import flags

from . import common
from . import longrun

common.define_objective_flags()
common.define_data_flags()
common.define_training_flags(max_epochs=True)
common.define_convergence_flags()
common.define_run_flags()
flags.DEFINE_string('workdir', 'workdir/train', 'Where outputs and checkpoints go.')
flags.DEFINE_bool('quiet', False, 'No progress display.')
flags.DEFINE_bool(
  'verbose', False, "A line per epoch (default: one line that updates in place, or a log's line every 5 s)."
)
common.group('run', 'workdir', 'quiet', 'verbose')
flags.register_multi_flags_validator(
  ['quiet', 'verbose'],
  lambda f: not (f['quiet'] and f['verbose']),
  message='--quiet shows no progress and --verbose every epoch: give one.',
)

FLAGS = flags.FLAGS


def main(argv):
  del argv
  from linear_jax.runs import painter  # pylint: disable=import-outside-toplevel

  # The pictures' process, forked before any JAX work (one process only: a multi-process run's
  # runtime starts in common.start), with the run's log settings; it imports matplotlib while this
  # one trains, and is ended however this one ends.
  common.quiet_logs()
  drawing = painter.start() if FLAGS.plots and not (FLAGS.distributed or FLAGS.coordinator_address) else None
  try:
    _train(drawing)
  finally:
    if drawing is not None:
      drawing.close()


def _train(drawing):
  common.start(FLAGS)
  import jax  # pylint: disable=import-outside-toplevel

  from linear_jax.optim import results  # pylint: disable=import-outside-toplevel
  from linear_jax.runs import experiment  # pylint: disable=import-outside-toplevel
  from linear_jax.runs import progress  # pylint: disable=import-outside-toplevel
  from linear_jax.training import resume  # pylint: disable=import-outside-toplevel

  main_process = jax.process_index() == 0  # only process 0 writes outputs and checkpoints
  workdir = common.prepare_workdir(FLAGS.workdir, 'train', elsewhere=common.expand_path)
  if main_process and FLAGS.optimizer != 'lbfgs':  # L-BFGS keeps no checkpoint
    longrun.note_fresh_start(FLAGS.resume, os.path.join(workdir, resume.CHECKPOINT))
  display = progress.Progress(verbose=FLAGS.verbose)
  show = lambda metrics: display(experiment.progress_line(metrics, FLAGS.max_epochs))
  try:
    with longrun.guarded(workdir if main_process else None):
      summary = experiment.train_and_evaluate(
        common.train_config(FLAGS),
        common.data_config(FLAGS),
        workdir,
        common.run_options(FLAGS),
        write_outputs=main_process,
        on_epoch=None if FLAGS.quiet else show,
        progress=common.progress_line,
        record={f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])}
        | {f.name: f.value for f in FLAGS.get_key_flags_for_module(common)},
        painter=drawing,
      )
  except results.Diverged as e:
    display.close()
    sys.exit(f'Training diverged: {e}\nstopped: diverged')
  except ValueError as e:
    display.close()
    sys.exit(f'Error: {e}')
  display.close()
  if summary['interrupted']:
    checkpoint = os.path.join(workdir, resume.CHECKPOINT)
    longrun.exit_stopped(__spec__.name, checkpoint, f'epoch {summary["epochs_run"]} of {FLAGS.epochs}')
  if main_process:
    if summary.get('learning_rate_found'):
      print(experiment.step_size_line(summary['learning_rate_found']))
    print(experiment.last_line(summary, workdir))


if __name__ == '__main__':
  common.run(main)
