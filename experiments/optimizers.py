r"""Optimizers against the optimum: f − f* per epoch and per second, one problem, one budget.

    python -m experiments.optimizers
    python -m experiments.optimizers --dataset=breast_cancer --loss=logistic --epochs=60

Trains sgd, momentum, nesterov and adam (constant learning rate), sgd under
every decaying schedule, full-batch gradient descent and L-BFGS on the same
problem for the same number of passes over the data, with f* from L-BFGS in
float64. Prints a table, and writes optimizers.json and optimizers.png
(f − f* against epochs and against seconds, log scale) to --workdir. The JSON's
"claims" measure two of the lecture's statements on this run: a constant
learning rate stalls at a noise floor that a decaying one goes below, and
mini-batches beat the full batch per epoch (and how they compare per second). The work is
`linear_jax.runs.optimizers_run.compare`.
"""

import sys

from absl import flags
import jax

from linear_jax.optim import config
from linear_jax.runs import optimizers_run
from linear_jax.training import workdir as workdir_lib

from . import common

common.define_objective_flags()
common.define_data_flags()
flags.DEFINE_integer(
  'epochs', 100, 'Budget: passes over the training data for every optimizer.', lower_bound=2
)
flags.DEFINE_integer('batch_size', 64, 'Mini-batch size of the stochastic optimizers.', lower_bound=1)
flags.DEFINE_float('learning_rate', 0.3, 'sgd learning rate (momentum methods use lr·(1 − 0.9), adam 0.01).')
flags.DEFINE_float('full_batch_lr', 0.5, 'Learning rate of full-batch gradient descent.')
flags.DEFINE_enum('dtype', 'float64', ('float32', 'float64'), 'Precision (float64 resolves f − f* to 1e-12).')
flags.DEFINE_string('workdir', 'workdir/optimizers', 'Where outputs go.')
common.group('run', 'workdir')
for _name in ('learning_rate', 'full_batch_lr'):  # each a step the run takes in --dtype
  flags.register_multi_flags_validator(
    [_name, 'dtype'], lambda f, n=_name: common.positive_in_dtype(n, f['dtype'])(f[n])
  )

FLAGS = flags.FLAGS
# A well-conditioned problem by default, so the budget reaches the regime where noise dominates.
FLAGS.set_default('reg', 1e-2)


def optimizers_config():
  """The objective, precision and budget of the comparison, from the flags."""
  return config.TrainConfig(
    loss=FLAGS.loss,
    loss_hparams=common.loss_hparams_for(FLAGS, FLAGS.loss),
    penalty=FLAGS.penalty,
    reg=FLAGS.reg,
    seed=FLAGS.seed,
    dtype=FLAGS.dtype,
    epochs=FLAGS.epochs,
  )


def main(argv):
  del argv
  common.start(FLAGS)
  jax.config.update('jax_enable_x64', True)  # f* in float64
  workdir = common.prepare_workdir(FLAGS.workdir, 'optimizers')
  try:
    with workdir_lib.locked(workdir):  # one run per workdir
      dataset = common.load_dataset(FLAGS)
      out = optimizers_run.compare(
        optimizers_config(),
        dataset,
        workdir,
        learning_rate=FLAGS.learning_rate,
        batch_size=FLAGS.batch_size,
        full_batch_lr=FLAGS.full_batch_lr,
      )
  except ValueError as e:
    sys.exit(f'Error: {e}')
  print(optimizers_run.table(out))
  print(optimizers_run.claims_text(out))
  print(f'outputs in {workdir}')


if __name__ == '__main__':
  common.run(main)
