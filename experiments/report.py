r"""The lecture as a report: every viewpoint and experiment, from real runs, in one HTML file.

    python -m experiments.report --workdir=workdir/report

Runs small versions of the experiments (training on digits with its class
templates, the geometric viewpoint, the gradient-check table, a learning-rate
sweep, search against gradient descent, the hard cases, loss surfaces with
descent paths, SVM against softmax, pixels against histogram features, f − f*
of each optimizer against the L-BFGS optimum) and
writes report.html (pictures embedded, so the file stands alone) and the PNGs
beside it. --tiny runs a smaller version for tests. The work is
`linear_jax.runs.report.build`.
"""

import signal
import sys
import time

from absl import flags
import jax

from linear_jax.runs import report
from linear_jax.training import preemption
from linear_jax.training import workdir as workdir_lib

from . import common

flags.DEFINE_string('workdir', 'workdir/report', 'Where report.html and the pictures go.')
flags.DEFINE_bool('tiny', False, 'Tiny sizes: a smoke test of the whole report.')
flags.DEFINE_integer('seed', 0, 'Seed of every random draw.')
common.validate_as_field('seed')
common.group('run', 'workdir', 'seed')

FLAGS = flags.FLAGS


def main(argv):
  del argv
  common.start(FLAGS)
  jax.config.update('jax_enable_x64', True)  # for the gradient checks; training stays float32
  workdir = common.prepare_workdir(FLAGS.workdir, 'report')
  print(report.header(workdir, FLAGS.tiny), flush=True)
  t = time.perf_counter()
  try:
    with workdir_lib.locked(workdir):  # one run per workdir
      path, ok = report.build(workdir, FLAGS.tiny, FLAGS.seed, lambda line: print(line, flush=True))
  except (ValueError, OSError) as e:  # an output that cannot be written: one line, no traceback
    sys.exit(common.error_line(e))
  except report.Stopped as e:  # its numbers would be those of runs cut short
    print(f'report: stopped by {e}', file=sys.stderr)
    sys.exit(128 + int(getattr(signal, preemption.signal_name())))
  except KeyboardInterrupt:  # Ctrl-C before the sections (while compiling the first)
    print('report: stopped by SIGINT: no report written.', file=sys.stderr)
    sys.exit(128 + signal.SIGINT)
  print(f'{path} written in {time.perf_counter() - t:.0f} s; gradient checks {"all pass" if ok else "FAIL"}')


if __name__ == '__main__':
  common.run(main)
