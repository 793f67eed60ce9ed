r"""The lecture's hard cases for a linear classifier, and feature maps that solve them.

    python -m experiments.hard_cases

For each case (parity, ring, three modes) trains a linear classifier on the
2-D data, prints its test accuracy next to the majority-class rate, then
trains on the case's feature map (the lecture's "features" view) and prints
that accuracy; draws data and learned boundaries to --workdir.
"""

import sys

from absl import flags

from linear_jax.runs import hard_cases
from linear_jax.training import workdir as workdir_lib

from . import common

flags.DEFINE_integer(
  'num_examples',
  1000,
  'Examples per case (each is drawn in the pictures); 100 at least, a test split of 20.',
  lower_bound=100,
  upper_bound=1_000_000,
)
flags.DEFINE_integer('epochs', 100, 'Training epochs.', lower_bound=1)
flags.DEFINE_integer('seed', 0, 'Seed of the data and the initialization.')
common.validate_as_field('seed')
flags.DEFINE_string('workdir', 'workdir/hard_cases', 'Where the pictures go.')
common.group('run', 'seed', 'workdir')

FLAGS = flags.FLAGS


def main(argv):
  del argv
  common.start(FLAGS)
  workdir = common.prepare_workdir(FLAGS.workdir, 'hard_cases')
  try:
    with workdir_lib.locked(workdir):  # one run per workdir
      rows = hard_cases.run_all(workdir, FLAGS.num_examples, FLAGS.epochs, FLAGS.seed)
  except (ValueError, OSError) as e:  # an output that cannot be written: one line, no traceback
    sys.exit(common.error_line(e))
  print(f'{"case":<12} {"majority":>9} {"linear":>9} {"feature map":>12}')
  for r in rows:
    print(
      f'{r["case"]:<12} {100 * r["majority"]:>8.1f}% {100 * r["linear_accuracy"]:>8.1f}% '
      f'{100 * r["feature_map_accuracy"]:>11.1f}%'
    )
  print(f'pictures in {workdir}')


if __name__ == '__main__':
  common.run(main)
