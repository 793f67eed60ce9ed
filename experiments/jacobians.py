r"""Prints the lecture's Jacobian conventions for a small linear classifier, autodiff beside hand-derived.

    python -m experiments.jacobians

For each: its name, the lecture's shape, the shape `jax.jacfwd` / `jax.jacrev`
/ `jax.grad` gives, the formula derived by hand, the largest difference
between the two, and both matrices. Exits 1 if any shape or value disagrees.
"""

import sys

from absl import flags
import numpy as np

from . import common

flags.DEFINE_integer('num_features', 4, 'D of the classifier.', lower_bound=1)
flags.DEFINE_integer('num_classes', 3, 'C of the classifier.', lower_bound=2)
flags.DEFINE_integer('seed', 0, 'Seed of the random weights and input.')
common.validate_as_field('seed')
common.group('run', 'seed')
flags.DEFINE_bool('values', True, 'Print the matrices too.')

FLAGS = flags.FLAGS


def main(argv):
  del argv
  common.start(FLAGS)
  import jax  # pylint: disable=import-outside-toplevel

  from linear_jax.data import memory  # pylint: disable=import-outside-toplevel
  from linear_jax.maths import jacobians  # pylint: disable=import-outside-toplevel

  c, d = FLAGS.num_classes, FLAGS.num_features
  try:  # ds/dvec(W) is [C, C·D]: autodiff's, the derived one, their difference and temporaries
    memory.check_memory(
      5 * 4 * c * c * d,
      'jacobians',
      memory.device_memory_available(),
      what=f'ds/dvec(W) [{c:,} x {c * d:,}]',
      advice='use fewer --num_classes or --num_features: the conventions are the same at any size.',
    )
  except ValueError as e:
    sys.exit(f'Error: {e}')
  bad = 0
  for j in jacobians.lecture_jacobians(jax.random.PRNGKey(FLAGS.seed), FLAGS.num_features, FLAGS.num_classes):
    same_shape = j.autodiff.shape == j.shape == j.derived.shape
    diff = float(np.max(np.abs(j.autodiff - j.derived))) if same_shape else float('inf')
    ok = same_shape and diff <= 1e-5
    bad += not ok
    print(
      f'{j.name:<18} lecture {j.shape}  autodiff {j.autodiff.shape}  hand {j.derived.shape}'
      f'  = {j.formula:<30}'
      f'  max |diff| {diff:.1e}  {"OK" if ok else "FAIL"}'
    )
    if FLAGS.values:
      with np.printoptions(precision=3, suppress=True, linewidth=120):
        print('  autodiff:\n   ' + str(j.autodiff).replace('\n', '\n   '))
  if bad:
    sys.exit(1)


if __name__ == '__main__':
  common.run(main)
