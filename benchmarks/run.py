r"""Benchmarks linear_jax against its peers, measured in one run on one machine.

    python -m benchmarks.run --out=benchmarks/RESULTS.md

Every time is a median of runs after a warm-up (of --repeats runs in section
1; the other sections state their counts in their tables); every ratio
compares two numbers measured in this run. Sections (--sections=1,...,11):
1. loss + gradient on CIFAR-shaped data against NumPy (and PyTorch if
   installed), and the effective bandwidth against a plain read of x;
2. mini-batch training throughput against scikit-learn's SGDClassifier;
3. time to accuracy on digits, imports and compilation included;
4. sweeps of K models trained together against K sequential runs;
5. gradient checking: vectorized numerical gradient against a coordinate loop;
6. loading a large file: memory and time against a plain np.load (loading.py);
7. the whole run: whole train.fit against whole SGDClassifier.fit, streaming
   against in-memory, memory with --stream (wholerun.py);
8. reaching the optimum: objectives equal to scikit-learn's, L-BFGS and
   regularization paths against LogisticRegression (optimum.py);
9. long runs: checkpoint overhead and SIGTERM to exit (longruns.py);
10. the demo page: a drag and a step timed from a headless browser (demo.py);
11. the default run: each loss against its best objective and scikit-learn's
    estimator, the whole process against scikit-learn's, the host's share of
    an epoch (defaults.py).
This file holds the flags, the list of sections and the writing of the
results; the harness is in harness.py, sections 1 and 5 in
kernels.py, 2-4 in training.py, and 6-11 in their own modules.

Run on a GPU, the same command adds a "## GPU results" section to the same
file (naming the card, and the fraction of its data-sheet bandwidth reached)
and keeps the CPU one.
"""

import importlib
import json
import os

from absl import app
from absl import flags

from . import harness
from . import kernels
from . import training
from .harness import data_sheet_bandwidth  # noqa: F401  (part of this module's interface)
from .harness import merge_results
from .harness import section_parts  # noqa: F401  (part of this module's interface)

flags.DEFINE_string(
  'out',
  'benchmarks/RESULTS.md',
  'Markdown file for the tables: this backend\'s section ("## CPU results", "## GPU results") is replaced, '
  "the other backends' sections are kept.",
)
flags.DEFINE_string('json_out', None, 'Also write every number as JSON here.')
flags.DEFINE_integer(
  'repeats', 7, 'Timed runs per measurement of section 1 (median reported).', lower_bound=1
)
flags.DEFINE_list(
  'sections',
  [str(k) for k in range(1, 11)],
  'Which sections to run, comma-separated; the results file keeps the other sections from earlier runs.',
)
flags.DEFINE_bool('quick', False, 'Small sizes, for a smoke test of the script itself.')

FLAGS = flags.FLAGS


def module_section(name):
  """A section kept in its own module `benchmarks/NAME.py`, with `run(quick)` and `markdown(results)`."""

  def section():
    module = importlib.import_module(f'{__package__}.{name}')
    out = module.run(FLAGS.quick)
    return None, module.markdown(out), out

  section.module = name
  return section


SECTIONS = {
  '1': kernels.section_gradients,
  '2': training.section_training,
  '3': training.section_time_to_accuracy,
  '4': training.section_sweeps,
  '5': kernels.section_gradcheck,
  '6': module_section('loading'),
  '7': module_section('wholerun'),
  '8': module_section('optimum'),
  '9': module_section('longruns'),
  '10': module_section('demo'),
  '11': module_section('defaults'),
}


TAKES_REPEATS = {'1'}  # the sections whose medians are over --repeats runs


flags.register_validator(
  'sections', lambda keys: bool(keys) and all(k in SECTIONS for k in keys), f'each of 1-{len(SECTIONS)}'
)


def main(argv):
  del argv
  from experiments import common  # pylint: disable=import-outside-toplevel

  common.quiet_logs()
  info = harness.machine()
  results = {'machine': info}
  new_parts = {}
  for key in FLAGS.sections:
    title, table, out = SECTIONS[key]()
    results[key] = out
    text = harness.markdown(title, table) if title else table  # a module section writes its own markdown
    if 'verdict' in out:
      text += '\n' + out['verdict'] + '\n'
    print(text, flush=True)
    new_parts[key] = text
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  previous = ''
  if os.path.exists(FLAGS.out):
    with open(FLAGS.out) as f:
      previous = f.read()
  header = (
    '# linear_jax benchmark results\n\n'
    'Made by `python -m benchmarks.run --out=benchmarks/RESULTS.md`, '
    'each section on its own backend (on a machine with a GPU: `bash benchmarks/gpu_run.sh`).\n'
  )
  # Section 1 takes --repeats; the others choose their own and state them in their tables.
  repeats = {key: FLAGS.repeats if key in TAKES_REPEATS else None for key in new_parts}
  text = merge_results(previous, header, harness.backend_section(previous, info, repeats, new_parts))
  tmp = FLAGS.out + '.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, FLAGS.out)
  if FLAGS.json_out:
    with open(FLAGS.json_out, 'w') as f:
      json.dump(results, f, indent=1, default=float)
  print(f'wrote {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
