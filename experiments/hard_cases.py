r"""The lecture's hard cases for a linear classifier, and feature maps that solve them.

    python -m experiments.hard_cases

For each case (parity, ring, three modes) trains a linear classifier on the
2-D data, prints its test accuracy next to the majority-class rate, then
trains on the case's feature map (the lecture's "features" view) and prints
that accuracy; draws data and learned boundaries to --workdir.
"""

import json
import os

from absl import app
from absl import flags

from . import common

flags.DEFINE_integer('num_examples', 1000, 'Examples per case.', lower_bound=10)
flags.DEFINE_integer('epochs', 100, 'Training epochs.', lower_bound=1)
flags.DEFINE_integer('seed', 0, 'Seed of the data and the initialization.')
flags.DEFINE_string('workdir', 'workdir/hard_cases', 'Where the pictures go.')

FLAGS = flags.FLAGS


def run(workdir, num_examples, epochs, seed):
  """Every case with raw and mapped features; writes the pictures, returns the table."""
  from linear_jax import hard_cases  # pylint: disable=import-outside-toplevel
  from linear_jax import plots  # pylint: disable=import-outside-toplevel

  rows = []
  for case in hard_cases.CASES:
    row = {'case': case}
    for features in (False, True):
      out = hard_cases.fit_case(case, num_examples, seed, features, epochs)
      tag = 'feature_map' if features else 'linear'
      row['majority'] = out['majority']
      row[f'{tag}_accuracy'] = out['accuracy']
      title = f'{case}: {"feature map" if features else "linear"} — test acc {100 * out["accuracy"]:.1f}%'
      plots.hard_case(
        out['x'],
        out['y'],
        out['grid_scores'],
        out['extent'],
        os.path.join(workdir, f'{case}_{tag}.png'),
        title,
      )
    rows.append(row)
  with open(os.path.join(workdir, 'hard_cases.json'), 'w') as f:
    json.dump(rows, f, indent=1, allow_nan=False)
  return rows


def main(argv):
  del argv
  common.start(FLAGS)
  workdir = common.prepare_workdir(FLAGS.workdir)
  rows = run(workdir, FLAGS.num_examples, FLAGS.epochs, FLAGS.seed)
  print(f'{"case":<12} {"majority":>9} {"linear":>9} {"feature map":>12}')
  for r in rows:
    print(
      f'{r["case"]:<12} {100 * r["majority"]:>8.1f}% {100 * r["linear_accuracy"]:>8.1f}% '
      f'{100 * r["feature_map_accuracy"]:>11.1f}%'
    )
  print(f'pictures in {workdir}')


if __name__ == '__main__':
  app.run(main)
