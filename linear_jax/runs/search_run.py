"""A whole search comparison as one library call: `run_search(config, name, load, workdir, options)`.

`experiments/search.py` only parses its flags into a `TrainConfig` and a
`SearchOptions`, calls `run_search` and prints `table(rows, budget)`. The
parts: `low_dim_problem` builds the 2-D problem, `open_segments` the
resumable checkpoint, `run_problems` runs every method of `search.compare` on
each problem with the same budget, and `write_outputs` writes search.json and
search.png.
"""

import dataclasses
import os

from linear_jax.data import datasets as data
from linear_jax.maths import loss_files
from linear_jax.maths import losses
from linear_jax.runs import plots
from linear_jax.training import files
from linear_jax.training import fingerprint
from linear_jax.tuning import search
from linear_jax.tuning import search_state

GRADIENT_COST = 2  # loss evaluations a gradient counts as: two passes over the data


def low_dim_problem(loss, seed):
  """A 2-D problem whose targets fit `loss`: `(name, dataset)` (blobs, binary blobs or linreg; N = 600)."""
  kind = losses.get_loss(loss).targets
  raw = {
    'class': data.blobs(600, 2, 3, seed=seed),
    'binary': data.binary2d(600, seed=seed),
    'real': data.linreg(600, 2, seed=seed),
  }[kind]
  name = '2-D linreg' if kind == 'real' else '2-D blobs'
  return name, data.prepare(raw, name, seed=seed)


def identity(settings, problems, loss=None):
  """What fixes a search's result: `settings`, each problem's data (`fingerprint.of`) and the contents of
  a loss file (`loss`: the `--loss` text)."""
  out = dict(settings)
  out['loss_file_sha256'] = loss_files.contents_digest(loss)
  for name, ds in problems:
    out[f'data {name}'] = fingerprint.of(ds)
  return out


def open_segments(workdir, identity_dict, checkpoint_every, resume):
  """The `search_state.Segments` at `workdir`/search_checkpoint.npz, removed first unless `resume`."""
  path = os.path.join(workdir, search_state.FILE)
  if not (resume and os.path.exists(path)):  # a resume refused (other settings or data) deletes nothing
    files.remove_outputs(workdir, ('search.json', 'search.png'))  # the last search's, before any is written
  if not resume:
    files.remove_outputs(workdir, [search_state.FILE])
  return search_state.Segments(path, identity_dict, checkpoint_every, resume)


def run_problems(config, problems, budget, segments=None, **options):
  """Every method of `search.compare` on each `(name, dataset)` of `problems` with the same budget.

  Args:
    config: a `train.TrainConfig`: the objective and gradient descent's learning rate.
    problems: `[(name, dataset)]`.
    budget: loss evaluations each method may spend.
    segments: a `search_state.Segments` (checkpoints, resume) or `None`.
    **options: `population`, `elite`, `mutation_scale`, `step_size`, `proposals`, `init_scale`,
      `batch_size` of `search.compare`.

  Returns:
    `(rows, curves)`: the rows of every problem in order, and `{panel title: that problem's curves}`,
    the title naming its number of weights (`D * C`, plus the biases).
  """
  all_rows, all_curves = [], {}
  for name, dataset in problems:
    rows, curves = search.compare(config, dataset, budget, name=name, segments=segments, **options)
    all_rows += rows
    all_curves[f'{name} ({dataset.num_features * (dataset.num_classes or 1)}+ weights)'] = curves
  return all_rows, all_curves


def write_outputs(workdir, budget, rows, curves):
  """search.json (the budget, the gradient's cost and the rows) and search.png (the curves) in `workdir`."""
  files.write_json(
    os.path.join(workdir, 'search.json'), {'budget': budget, 'gradient_cost': GRADIENT_COST, 'rows': rows}
  )
  plots.search_curves(curves, os.path.join(workdir, 'search.png'))


@dataclasses.dataclass(frozen=True)
class SearchOptions:
  """Everything of a search comparison beside the objective (the flags of `experiments/search.py`)."""

  budget: int = 20000  # loss evaluations each method may spend
  population: int = 100  # genetic algorithm
  elite: int = 4
  mutation_scale: float = 0.1
  step_size: float = 0.05  # random local search
  proposals: int = 10
  init_scale: float = 1.0  # random and genetic search
  batch_size: int = 64  # mini-batch gradient descent
  low_dim: bool = True  # also the 2-D problem
  checkpoint_every: int = search_state.CHECKPOINT_EVERY
  resume: bool = False

  def method_options(self):
    """The keyword arguments of `search.compare`."""
    names = ('population', 'elite', 'mutation_scale', 'step_size', 'proposals', 'init_scale', 'batch_size')
    return {k: getattr(self, k) for k in names}


def run_search(config, name, load, workdir, options, settings=None):
  """Every method on the 2-D problem (with `options.low_dim`) and on a dataset, resumable; writes the outputs.

  Args:
    config: a `train.TrainConfig`: the objective, gradient descent's learning rate, the seed.
    name: the dataset's name (the problem's label).
    load: `() -> dataset`, called after the 2-D problem is built.
    workdir: where search.json, search.png and the checkpoint go (it exists).
    options: a `SearchOptions`.
    settings: what else fixes the result (e.g. the parsed flags), recorded in the checkpoint's
      identity so `resume` refuses a checkpoint of other settings.

  Returns:
    The rows of every problem in order (see `search.compare`).

  Raises:
    ValueError: bad settings or data; `preemption.Stopped` after a checkpoint when a stop was asked for.
  """
  problems = [low_dim_problem(config.loss, config.seed)] if options.low_dim else []
  problems.append((name, load()))
  identity_dict = identity(settings or dataclasses.asdict(options), problems, config.loss)
  segments = open_segments(workdir, identity_dict, options.checkpoint_every, options.resume)
  rows, curves = run_problems(config, problems, options.budget, segments, **options.method_options())
  write_outputs(workdir, options.budget, rows, curves)
  return rows


def table(rows, budget):
  """The printed summary of a search comparison: the budget's accounting and one line a method."""
  lines = [
    f'Budget: {budget} loss evaluations per method; a gradient costs {GRADIENT_COST} '
    '(two passes over the data);',
    'the loss of the curves is monitored once per epoch for gradient descent, not counted.\n',
    f'{"problem":<12} {"method":<22} {"best train loss":>15} {"val metric":>10} {"evals":>7} {"seconds":>8}',
  ]
  for r in rows:
    val = '—' if r['val_metric'] is None else f'{r["val_metric"]:.4f}'  # no validation split
    lines.append(
      f'{r["problem"]:<12} {r["method"]:<22} {r["best_train_loss"]:>15.4f} {val:>10} '
      f'{r["evaluations"]:>7} {r["seconds"]:>8.2f}'
    )
  return '\n'.join(lines)
