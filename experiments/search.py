r"""Learning is search: random, local and genetic search against gradient descent.

    python -m experiments.search --dataset=digits --loss=softmax --budget=20000

Runs every method with the same budget of loss evaluations (a gradient counts
as 2: it costs two passes over the data) on a low-dimensional problem (2-D
blobs) and on the named dataset, and prints a table of best training loss,
validation accuracy, evaluations and seconds; search.png plots best loss
against evaluations. Search is competitive with a handful of weights and
hopeless with hundreds.
"""

import dataclasses
import os
import sys

from absl import flags

from linear_jax.optim import config
from linear_jax.runs import search_run
from linear_jax.training import preemption
from linear_jax.tuning import search_state

from . import common
from . import longrun

common.define_objective_flags()
common.define_data_flags()
flags.DEFINE_integer('budget', 20000, 'Loss evaluations each method may spend, >= 1.')
flags.DEFINE_integer('population', 100, 'Genetic algorithm: population size, >= 2.')
flags.DEFINE_integer('elite', 4, 'Genetic algorithm: members kept unchanged each generation.', lower_bound=0)
flags.DEFINE_float('mutation_scale', 0.1, 'Genetic algorithm: standard deviation of mutations, > 0.')
flags.DEFINE_float('step_size', 0.05, 'Random local search: standard deviation of perturbations, > 0.')
flags.DEFINE_integer('proposals', 10, 'Random local search: perturbations tried per iteration, >= 1.')
flags.DEFINE_float('init_scale', 1.0, 'Random and genetic search: standard deviation of random weights, > 0.')
flags.DEFINE_float('learning_rate', 0.1, 'Gradient descent: learning rate, > 0.')
flags.DEFINE_integer('batch_size', 64, 'Mini-batch gradient descent: batch size, > 0.')
flags.DEFINE_bool('low_dim', True, 'Also run on a 2-D problem (blobs, or linreg for regression losses).')
flags.DEFINE_string('workdir', 'workdir/search', 'Where outputs and the checkpoint go.')
flags.DEFINE_bool('resume', False, 'Continue from --workdir/search_checkpoint.npz (bit for bit).')
flags.DEFINE_integer(
  'checkpoint_every',
  search_state.CHECKPOINT_EVERY,
  'Loss evaluations between checkpoints (rounded down to whole generations, iterations or epochs; '
  'and after every method).',
  lower_bound=1,
)
common.group('run', 'workdir', 'resume', 'checkpoint_every')

for _name in ('budget', 'proposals', 'batch_size'):
  flags.register_validator(_name, lambda v: v >= 1, message=f'--{_name} must be >= 1.')
flags.register_validator('population', lambda v: v >= 2, message='--population must be >= 2.')
for _name in ('mutation_scale', 'step_size', 'init_scale', 'learning_rate'):
  flags.register_validator(_name, common.positive_in_dtype(_name))
flags.register_multi_flags_validator(
  ['elite', 'population'], lambda f: f['elite'] < f['population'], message='--elite must be < --population.'
)
flags.register_multi_flags_validator(
  ['budget', 'population'],
  lambda f: f['budget'] >= f['population'],
  message='--budget must be at least one --population.',
)

FLAGS = flags.FLAGS
SETTINGS_FLAGS = ('workdir', 'resume', 'checkpoint_every', 'compilation_cache')  # do not change the result
OPTIONS = [f.name for f in dataclasses.fields(search_run.SearchOptions)]


def main(argv):
  del argv
  common.start(FLAGS)
  workdir = common.prepare_workdir(FLAGS.workdir, 'search')
  longrun.note_fresh_start(FLAGS.resume, os.path.join(workdir, search_state.FILE))
  settings = {  # what fixes the result, recorded in the checkpoint: the flags but the run's own
    f.name: f.value
    for module in (sys.modules[__name__], common)
    for f in FLAGS.get_key_flags_for_module(module)
    if f.name not in SETTINGS_FLAGS
  }
  cfg = config.TrainConfig(
    loss=FLAGS.loss,
    penalty=FLAGS.penalty,
    reg=FLAGS.reg,
    loss_hparams=common.loss_hparams_for(FLAGS, FLAGS.loss),
    learning_rate=FLAGS.learning_rate,
    seed=FLAGS.seed,
    epochs=1,
  )
  options = search_run.SearchOptions(**{k: FLAGS[k].value for k in OPTIONS})
  try:
    with longrun.guarded(workdir):
      load = lambda: common.load_dataset(FLAGS)
      rows = search_run.run_search(cfg, FLAGS.dataset, load, workdir, options, settings)
  except preemption.Stopped as e:
    longrun.exit_stopped(__spec__.name, e.checkpoint, e.progress)  # the module as it was started
  except ValueError as e:
    sys.exit(f'Error: {e}')
  print(search_run.table(rows, FLAGS.budget))
  print(f'\noutputs in {workdir}')


if __name__ == '__main__':
  common.run(main)
