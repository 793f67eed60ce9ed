r"""Checks every hand-derived gradient against jax.grad and finite differences.

    python -m experiments.gradcheck --loss=all

For each loss × penalty × (plain, bias-trick) form and each method, prints the
three-way report (analytic vs autodiff, analytic vs numerical, autodiff vs
numerical) and exits 1 if any disagrees. A loss without a hand-derived
score_grad (your own `--loss=FILE.py:NAME`, say) has no analytic gradient:
its autodiff gradient is checked against finite differences alone. `--plant=sign_flip` (or factor_two,
missing_reg, missing_bias) checks a deliberately wrong gradient instead, to
show the checker catching it. Runs in float64.
"""

import json
import math
import sys

from absl import flags
import jax

from linear_jax.maths import gradcheck
from linear_jax.maths import losses
from linear_jax.runs import gradcheck_run
from linear_jax.training import files

from . import common

common.define_objective_flags(allow_all=True, dtype='float64')  # checks run in float64
flags.DEFINE_enum(
  'method', 'all', ('central', 'forward', 'sparse', 'directional', 'all'), 'Numerical method.'
)
H_RANGE = gradcheck.STEP_RANGE['float64']  # the check runs in float64; see STEP_RANGE for the bounds
flags.DEFINE_float(
  'h',
  None,
  f'Finite-difference step in [{H_RANGE[0]:g}, {H_RANGE[1]:g}] (default: per method, see the docs).',
)
flags.register_validator(
  'h',
  lambda h: h is None or (math.isfinite(h) and H_RANGE[0] <= h <= H_RANGE[1]),
  message=f'--h must be finite and in [{H_RANGE[0]:g}, {H_RANGE[1]:g}]; outside it a difference is noise.',
)
flags.DEFINE_integer('num_examples', 20, 'N, examples in the random problem.', lower_bound=1)
flags.DEFINE_integer('num_features', 6, 'D, input features.', lower_bound=1)
flags.DEFINE_integer('num_classes', 4, 'C, classes (binary losses use 1).', lower_bound=2)
flags.DEFINE_integer(
  'num_coords', 64, 'Coordinates drawn by the sparse check.', lower_bound=1, upper_bound=10_000
)
flags.DEFINE_integer(
  'num_directions', 8, 'Directions drawn by the directional check.', lower_bound=1, upper_bound=10_000
)
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
common.group('run', 'json_out')


def _read_by_the_method(f):
  """Refuses a flag the chosen method never reads, and a planted bug the check cannot show."""
  if f['richardson'] and f['method'] == 'forward':
    raise flags.ValidationError('--richardson extrapolates central differences; --method=forward takes none.')
  for name, method in (('num_coords', 'sparse'), ('num_directions', 'directional')):
    if FLAGS[name].present and f['method'] not in (method, 'all'):
      raise flags.ValidationError(f'--{name} is read by --method={method} alone; drop it.')
  if f['plant'] == 'missing_reg' and f['reg'] == 0:
    raise flags.ValidationError(
      "--plant=missing_reg leaves out the penalty's gradient, which is 0 at --reg=0: give --reg > 0."
    )
  if f['plant'] != 'none' and f['grad'] == 'custom_vjp':  # the plant replaced the custom VJP, unsaid
    raise flags.ValidationError(
      f'--plant={f["plant"]} plants a bug in the hand-derived gradient, so --grad=custom_vjp would go '
      'unchecked: give one of the two.'
    )
  wants = f'--plant={f["plant"]}' if f['plant'] != 'none' else '--grad=custom_vjp'
  if f['plant'] != 'none' or f['grad'] == 'custom_vjp':
    for name in common.loss_names(f['loss']):
      if losses.get_loss(name).score_grad is None:
        raise flags.ValidationError(
          f'{wants} needs a hand-derived score_grad, and loss {name!r} has none: without {wants}, its '
          'jax.grad is checked against finite differences.'
        )
  return True


flags.register_multi_flags_validator(
  ['method', 'richardson', 'num_coords', 'num_directions', 'plant', 'reg', 'grad', 'loss'],
  _read_by_the_method,
)


def _classes_read(f):
  """Refuses --num_classes where every loss checked is binary: one output, whatever it says."""
  if FLAGS['num_classes'].present and all(
    losses.get_loss(name).targets == 'binary' for name in common.loss_names(f['loss'])
  ):
    raise flags.ValidationError(
      f'--num_classes is not read by --loss={f["loss"]}: a binary loss has one output (labels 0 and 1); '
      'drop it.'
    )
  return True


flags.register_multi_flags_validator(['loss', 'num_classes'], _classes_read)

FLAGS = flags.FLAGS


def run():
  """Runs every requested check, printing each report as it is made; returns the reports."""
  return gradcheck_run.check_all(
    common.loss_names(FLAGS.loss),
    common.PENALTY_NAMES if FLAGS.penalty == 'all' else (FLAGS.penalty,),
    gradcheck.METHODS if FLAGS.method == 'all' else (FLAGS.method,),
    FLAGS.bias_trick,
    seed=FLAGS.seed,
    num_examples=FLAGS.num_examples,
    num_features=FLAGS.num_features,
    num_classes=FLAGS.num_classes,
    reg=FLAGS.reg,
    grad=FLAGS.grad,
    plant=FLAGS.plant,
    h=FLAGS.h,
    richardson=FLAGS.richardson,
    num_coords=FLAGS.num_coords,
    num_directions=FLAGS.num_directions,
    loss_hparams=lambda loss: common.loss_hparams_for(FLAGS, loss),
    on_report=lambda report: print(report.summary(), flush=True),
    on_autodiff_only=lambda loss: print(
      f'{loss}: no hand-derived score_grad, so there is no analytic gradient to compare; '
      'checking autodiff (jax.grad of the objective) against finite differences.',
      flush=True,
    ),
  )


def _a_report(path):
  """Whether `path` holds what --json_out writes (an earlier run's reports), which a run may replace."""
  try:
    with open(path, encoding='utf-8') as f:
      out = json.load(f)
  except (OSError, ValueError):
    return False
  return isinstance(out, dict) and set(out) == {'passed', 'reports'}


def main(argv):
  del argv
  json_out = common.prepare_output_file('json_out', FLAGS.json_out, _a_report) if FLAGS.json_out else None
  common.start(FLAGS)
  jax.config.update('jax_enable_x64', True)
  try:
    reports = run()
  except ValueError as e:  # a loss of the user's that misbehaves (NaN, a wrong shape): one line, no traceback
    sys.exit(f'Error: {e}')
  failed = [r for r in reports if not r.passed]
  print(f'\n{len(reports) - len(failed)} passed, {len(failed)} failed')
  if json_out:
    # Written as every output is: a new file renamed over the name, never through a link.
    out = {'passed': all(r.passed for r in reports), 'reports': [r.to_dict() for r in reports]}
    try:
      files.write_json(json_out, out)
    except files.WriteError as e:
      sys.exit(f'Error: {e}')
  if failed:
    print(
      'Gradient check FAILED for: '
      + ', '.join(sorted({f'{r.loss}/{r.penalty}{"/bias_trick" if r.bias_trick else ""}' for r in failed})),
      file=sys.stderr,
    )
    sys.exit(1)


if __name__ == '__main__':
  common.run(main)
