r"""Checks every hand-derived gradient against jax.grad and finite differences.

    python -m experiments.gradcheck --loss=all

For each loss × penalty × (plain, bias-trick) form and each method, prints the
three-way report (analytic vs autodiff, analytic vs numerical, autodiff vs
numerical) and exits 1 if any disagrees. `--plant=sign_flip` (or factor_two,
missing_reg, missing_bias) checks a deliberately wrong gradient instead, to
show the checker catching it. Runs in float64.
"""

import json
import sys

from absl import app
from absl import flags
import jax

from . import common

common.define_objective_flags(allow_all=True)
flags.DEFINE_enum(
  'method', 'all', ('central', 'forward', 'sparse', 'directional', 'all'), 'Numerical method.'
)
flags.DEFINE_float('h', None, 'Finite-difference step (default: per method, see the docs).', lower_bound=0.0)
flags.DEFINE_integer('num_examples', 20, 'N, examples in the random problem.', lower_bound=1)
flags.DEFINE_integer('num_features', 6, 'D, input features.', lower_bound=1)
flags.DEFINE_integer('num_classes', 4, 'C, classes (binary losses use 1).', lower_bound=2)
flags.DEFINE_integer('num_coords', 64, 'Coordinates drawn by the sparse check.', lower_bound=1)
flags.DEFINE_integer('num_directions', 8, 'Directions drawn by the directional check.', lower_bound=1)
flags.DEFINE_enum(
  'bias_trick', 'both', ('no', 'yes', 'both'), 'Check the plain form, the bias-trick form, or both.'
)
flags.DEFINE_enum('grad', 'analytic', ('analytic', 'custom_vjp'), 'The gradient under test.')
flags.DEFINE_bool('richardson', False, 'Richardson-extrapolated central differences (steps h and h/2).')
flags.DEFINE_enum(
  'plant',
  'none',
  ('none', 'sign_flip', 'factor_two', 'missing_reg', 'missing_bias'),
  'Check a deliberately wrong gradient.',
)
flags.DEFINE_string('json_out', None, 'Write every report to this JSON file.')

FLAGS = flags.FLAGS


def _grad_under_test():
  # Imported after x64 is on, since the library makes arrays at import in places.
  from linear_jax import grad_sources  # pylint: disable=import-outside-toplevel
  from linear_jax import gradcheck  # pylint: disable=import-outside-toplevel

  if FLAGS.plant != 'none':
    return gradcheck.PLANTED_BUGS[FLAGS.plant]
  if FLAGS.grad == 'custom_vjp':
    return lambda params, x, targets, **kw: jax.grad(grad_sources.custom_vjp_objective)(
      params, x, targets, **kw
    )
  return None


def run():
  """Runs every requested check; returns the reports."""
  from linear_jax import gradcheck  # pylint: disable=import-outside-toplevel
  from linear_jax import losses  # pylint: disable=import-outside-toplevel

  losses_ = common.loss_names(FLAGS.loss)
  penalties = common.PENALTY_NAMES if FLAGS.penalty == 'all' else (FLAGS.penalty,)
  methods = gradcheck.METHODS if FLAGS.method == 'all' else (FLAGS.method,)
  forms = {'no': (False,), 'yes': (True,), 'both': (False, True)}[FLAGS.bias_trick]
  grad_fn = _grad_under_test()
  key = jax.random.PRNGKey(FLAGS.seed)
  reports = []
  for loss in losses_:
    if grad_fn is None and FLAGS.grad == 'analytic' and losses.get_loss(loss).score_grad is None:
      print(f'{loss:<10} no hand-derived score_grad: nothing to check', flush=True)
      continue
    for penalty in penalties:
      for bias_trick in forms:
        params, x, targets = gradcheck.random_problem(
          key, loss, FLAGS.num_examples, FLAGS.num_features, FLAGS.num_classes, bias_trick
        )
        for method in methods:
          report = gradcheck.check_gradients(
            params,
            x,
            targets,
            loss=loss,
            reg=FLAGS.reg,
            penalty=penalty,
            grad_fn=grad_fn,
            richardson=FLAGS.richardson and method != 'forward',
            method=method,
            h=FLAGS.h,
            num_coords=FLAGS.num_coords,
            num_directions=FLAGS.num_directions,
            key=jax.random.fold_in(key, 7),
            **common.loss_hparams_for(FLAGS, loss),
          )
          print(report.summary(), flush=True)
          reports.append(report)
  return reports


def main(argv):
  del argv
  common.start(FLAGS)
  jax.config.update('jax_enable_x64', True)
  reports = run()
  failed = [r for r in reports if not r.passed]
  print(f'\n{len(reports) - len(failed)} passed, {len(failed)} failed')
  if FLAGS.json_out:
    with open(FLAGS.json_out, 'w') as f:
      json.dump({'passed': not failed, 'reports': [r.to_dict() for r in reports]}, f, indent=1)
  if failed:
    print(
      'Gradient check FAILED for: '
      + ', '.join(sorted({f'{r.loss}/{r.penalty}{"/bias_trick" if r.bias_trick else ""}' for r in failed})),
      file=sys.stderr,
    )
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
