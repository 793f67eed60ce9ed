"""Learning as search: random search, random local search, a genetic algorithm.

The lecture's three classes of methods for finding the weights that minimize
the loss, all on the same objective as gradient descent (`losses.objective`
on the training set). Each is jit-compiled, with populations of weight
matrices evaluated under `vmap`, and each spends exactly the number of loss
evaluations it is given, never more, and reports how many it used.

The compiled programs are module-level `jax.jit` functions that take the
objective as an argument: `make_loss_fn` returns an `Objective`, a pytree
whose leaves are the data (and `reg`, the loss's hyperparameters, a mask),
so only shapes, budgets and population sizes are static and a second search
of the same shapes compiles nothing. A plain `params -> loss` callable works
too; its programs are compiled once per function.

A loss evaluation is one pass of the objective over the training data. Its
gradient, for a linear model, costs two such passes (the scores `x Wᵀ` and
the product `Gᵀ x`), so `gradient_descent` counts 2 evaluations per
full-batch step and `2·B/N` per mini-batch step of `B` examples.
"""

import dataclasses
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from linear_jax.data import memory
from linear_jax.datapath import factory as datapath
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.maths import validation
from linear_jax.optim import step
from linear_jax.training import train
from linear_jax.tuning import search_state

GRADIENT_COST = 2  # loss evaluations per gradient evaluation (see the module docstring)


@dataclasses.dataclass
class SearchResult:
  """The best parameters found, the evaluations spent and the curve of the search."""

  method: str
  params: model.Params
  best_loss: float
  evaluations: int
  curve_evals: np.ndarray  # evaluations spent at each point of the curve
  curve_loss: np.ndarray  # training loss by then: the best found; gradient descent's current one
  seconds: float = 0.0


# Evaluations are counted in int32 on the device.
MAX_BUDGET = 2**31 - 1


def _check(budget=1, population=1, mutation_scale=1.0, scale=1.0, scale_name='scale'):
  validation.check_whole('budget', budget, 1, MAX_BUDGET)
  validation.check_whole('population', population)
  for name, v in (('mutation_scale', mutation_scale), (scale_name, scale)):
    if not (validation.is_number(v) and math.isfinite(v) and v > 0):
      raise ValueError(f'{name} must be > 0 and finite, got {v!r}.')


@jax.tree_util.register_pytree_node_class
class Objective:
  """`params -> objective` on fixed data, as a pytree: the data are its leaves, the loss and penalty
  its static part, so a jitted program that takes it as an argument compiles once per shape and
  serves any data of that shape (a closure over the data would bake them in and compile again).

  x: `[N, D]`; targets: `[N]` or `[N, C]`; reg: scalar; hp: `{name: scalar}` of the loss;
  mask: `[N]` weights (padded rows 0) or None.
  """

  def __init__(self, x, targets, spec, reg, penalty, hp, mask=None):
    self.x, self.targets, self.spec, self.reg, self.penalty, self.hp, self.mask = (
      x,
      targets,
      spec,
      reg,
      penalty,
      hp,
      mask,
    )

  def __call__(self, params):
    return losses.unchecked_objective(
      params, self.x, self.targets, self.spec, self.reg, self.penalty, self.hp, self.mask
    )

  def tree_flatten(self):
    return (self.x, self.targets, self.reg, self.hp, self.mask), (self.spec, self.penalty)

  @classmethod
  def tree_unflatten(cls, aux, children):
    x, targets, reg, hp, mask = children
    return cls(x, targets, aux[0], reg, aux[1], hp, mask)


@jax.tree_util.register_pytree_node_class
class _Static:
  """A loss function given as a plain callable: no leaves, so programs compile once per function."""

  def __init__(self, fn):
    self.fn = fn

  def __call__(self, params):
    return self.fn(params)

  def tree_flatten(self):
    return (), self.fn

  @classmethod
  def tree_unflatten(cls, fn, _):
    return cls(fn)


def _objective(loss_fn):
  return loss_fn if isinstance(loss_fn, (Objective, _Static)) else _Static(loss_fn)


def make_loss_fn(x, targets, loss='softmax', reg=0.0, penalty='l2', loss_hparams=None, mask=None):
  """The `Objective` `params -> objective` on fixed data, with no host checks: for `vmap` and `jit`.

  `mask` (`[N]`, optional) weights the examples: 0 on padded rows.
  """
  spec = losses.get_loss(loss)
  hp = {k: jnp.asarray(v) for k, v in spec.resolve_hparams(loss_hparams).items()}
  mask = None if mask is None else jnp.asarray(mask)
  return Objective(jnp.asarray(x), jnp.asarray(targets), spec, jnp.asarray(reg), penalty, hp, mask)


@jax.jit
def _value(loss_fn, params):
  return loss_fn(params)


def random_like(key: jax.Array, template: chex.ArrayTree, scale: chex.Numeric) -> chex.ArrayTree:
  """Weights shaped like `template`, each drawn from `N(0, scale²)` (optax's `tree_random_like`, scaled)."""
  return optax.tree_utils.tree_scale(scale, optax.tree_utils.tree_random_like(key, template))


@functools.partial(jax.jit, static_argnames=('chunk',))
def _random_segment(loss_fn, template, scale, keys, *, chunk):
  """The objective of the weights drawn from each key, `chunk` at a time: `[len(keys)]`."""
  return jax.lax.map(lambda k: loss_fn(random_like(k, template, scale)), keys, batch_size=chunk)


def random_search(
  loss_fn, key, template, budget, scale=1.0, chunk_size=256, run_segments=search_state.in_one
):
  """Draws `budget` random weight sets `N(0, scale²)` and keeps the best.

  Args:
    loss_fn: `params -> scalar`, e.g. the `Objective` of `make_loss_fn` (then a second search of
      the same shapes compiles nothing).
    key: `jax.random` key.
    template: `Params` giving shapes and dtype.
    budget: loss evaluations (= candidates drawn).
    scale: standard deviation of the draws.
    chunk_size: candidates evaluated together under `vmap`.
    run_segments: how the scan over units runs (`search_state.Segments.run`
      checkpoints between slices); the same for every method.
  """
  _check(budget=budget, scale=scale)
  chunk = min(chunk_size, budget)
  keys = jax.random.split(key, budget)
  objective = _objective(loss_fn)
  # Each candidate is drawn inside the map from its own key, so only `chunk`
  # weight sets exist at a time; the winner is drawn again from its key.
  segment = lambda _, ks: (None, _random_segment(objective, template, scale, ks, chunk=chunk))
  losses_ = np.asarray(run_segments(segment, None, keys, 1)[1])
  losses_ = np.where(np.isfinite(losses_), losses_, np.inf)
  best = int(np.argmin(losses_))
  curve = np.minimum.accumulate(losses_)
  return SearchResult(
    'random search',
    random_like(keys[best], template, scale),
    float(losses_[best]),
    budget,
    np.arange(1, budget + 1),
    curve,
  )


@functools.partial(jax.jit, static_argnames=('proposals',))
def _local_segment(loss_fn, step_size, carry, keys, *, proposals):
  """Iterations of random local search, one per key: `((best, best_loss), curve)`."""

  def body(carry, k):
    best, best_loss = carry
    cands = jax.vmap(lambda kk: jax.tree.map(jnp.add, best, random_like(kk, best, step_size)))(
      jax.random.split(k, proposals)
    )
    vals = jax.vmap(loss_fn)(cands)
    vals = jnp.where(jnp.isfinite(vals), vals, jnp.inf)
    i = jnp.argmin(vals)
    better = vals[i] < best_loss
    best = jax.tree.map(lambda c, b: jnp.where(better, c[i], b), cands, best)
    best_loss = jnp.where(better, vals[i], best_loss)
    return (best, best_loss), best_loss

  return jax.lax.scan(body, carry, keys)


def random_local_search(
  loss_fn, key, init, budget, step_size=0.1, proposals=10, run_segments=search_state.in_one
):
  """Perturbs the best weights at random and keeps a perturbation that lowers the loss.

  Each iteration draws `proposals` perturbations `W + step_size·N(0, I)` of
  the current best, evaluated together under `vmap`; the best of them
  replaces the current weights if it is lower. Spends `1 + k·proposals ≤
  budget` evaluations (the start, then `k` iterations).
  """
  _check(budget=budget, population=proposals, scale=step_size, scale_name='step_size')
  iterations = (budget - 1) // proposals
  objective = _objective(loss_fn)
  segment = lambda carry, keys: _local_segment(objective, step_size, carry, keys, proposals=proposals)
  start = _value(objective, init)
  (best, best_loss), curve = run_segments(
    segment, (init, start), jax.random.split(key, iterations), proposals
  )
  evals = 1 + proposals * np.arange(iterations + 1)
  return SearchResult(
    'random local search',
    best,
    float(best_loss),
    int(evals[-1]),
    evals,
    np.concatenate([[float(start)], np.asarray(curve)]),
  )


@functools.partial(jax.jit, static_argnames=('population', 'generations'))
def _genetic_start(loss_fn, template, init_scale, key, *, population, generations):
  """Generation 0 (`population` random weight sets and their losses), its best loss, the later keys."""
  k0, key = jax.random.split(key)
  pop = jax.vmap(lambda k: random_like(k, template, init_scale))(jax.random.split(k0, population))
  fit = jax.vmap(loss_fn)(pop)
  fit = jnp.where(jnp.isfinite(fit), fit, jnp.inf)
  return (pop, fit), jnp.min(fit), jax.random.split(key, generations)


@functools.partial(jax.jit, static_argnames=('elite', 'tournament'))
def _genetic_segment(loss_fn, mutation_scale, carry, keys, *, elite, tournament):
  """Generations of the genetic algorithm, one per key: `((pop, fit), best loss of each)`."""
  population = carry[1].shape[0]
  children = population - elite

  def generation(carry, k):
    pop, fit = carry
    order = jnp.argsort(fit)
    ks, kc = jax.random.split(k)
    contestants = jax.random.randint(ks, (2, children, tournament), 0, population)
    winners = jnp.take_along_axis(contestants, jnp.argmin(fit[contestants], -1)[..., None], -1)[..., 0]
    breed = lambda a, b, kk: _breed(pop, a, b, kk, mutation_scale)
    kids = jax.vmap(breed)(winners[0], winners[1], jax.random.split(kc, children))
    kid_fit = jax.vmap(loss_fn)(kids)
    kid_fit = jnp.where(jnp.isfinite(kid_fit), kid_fit, jnp.inf)
    elites = order[:elite]
    pop = jax.tree.map(lambda e, c: jnp.concatenate([e[elites], c]), pop, kids)
    fit = jnp.concatenate([fit[elites], kid_fit])
    return (pop, fit), jnp.min(fit)

  return jax.lax.scan(generation, carry, keys)


def genetic_algorithm(
  loss_fn,
  key,
  template,
  budget,
  population=100,
  elite=4,
  mutation_scale=0.1,
  init_scale=1.0,
  tournament=3,
  run_segments=search_state.in_one,
):
  """A genetic algorithm: population, tournament selection, uniform crossover, mutation.

  Generation 0 is `population` random weight sets. Each later generation keeps
  the `elite` best unchanged (their loss is known, so they cost nothing) and
  breeds `population − elite` children: two parents, each the best of
  `tournament` random members, mixed gene by gene (uniform crossover), plus
  Gaussian mutation of scale `mutation_scale`. Spends `population + g ·
  (population − elite) ≤ budget` evaluations.
  """
  _check_genetic(budget, population, elite, mutation_scale, init_scale)
  children = population - elite
  generations = (budget - population) // children
  objective = _objective(loss_fn)
  carry, first, keys = _genetic_start(
    objective, template, init_scale, key, population=population, generations=generations
  )
  segment = lambda carry, keys: _genetic_segment(
    objective, mutation_scale, carry, keys, elite=elite, tournament=tournament
  )
  (pop, fit), curve = run_segments(segment, carry, keys, children)
  i = int(jnp.argmin(fit))
  best, best_loss = jax.tree.map(lambda t: t[i], pop), fit[i]
  evals = population + children * np.arange(generations + 1)
  return SearchResult(
    'genetic algorithm',
    best,
    float(best_loss),
    int(evals[-1]),
    evals,
    np.minimum.accumulate(np.concatenate([[float(first)], np.asarray(curve)])),
  )


def _check_genetic(budget, population, elite, mutation_scale, init_scale):
  """Refuses a genetic algorithm's budget, population, elite or scales out of range."""
  scales = {'mutation_scale': mutation_scale, 'scale': init_scale, 'scale_name': 'init_scale'}
  _check(budget=budget, population=population, **scales)
  if not 0 <= elite < population:
    raise ValueError(f'elite must be in [0, population), got {elite} with population {population}.')
  if budget < population:
    raise ValueError(f'budget {budget} is smaller than one population ({population}).')


def _breed(pop, a, b, key, mutation_scale):
  """The child of members `a` and `b` of `pop` (leaves `[population, ...]`): uniform crossover, mutation.

  Each gene comes from either parent with probability 1/2, plus Gaussian noise
  of scale `mutation_scale`.
  """
  k1, k2 = jax.random.split(key)
  pa = jax.tree.map(lambda t: t[a], pop)
  pb = jax.tree.map(lambda t: t[b], pop)
  leaves = jax.tree.leaves(pa)
  masks = [
    jax.random.bernoulli(k, 0.5, leaf.shape)
    for k, leaf in zip(jax.random.split(k1, len(leaves)), leaves, strict=True)
  ]
  mask_tree = jax.tree.unflatten(jax.tree.structure(pa), masks)
  child = jax.tree.map(lambda m, u, v: jnp.where(m, u, v), mask_tree, pa, pb)
  noise = random_like(k2, child, mutation_scale)
  return jax.tree.map(jnp.add, child, noise)


@functools.partial(jax.jit, static_argnames=('structure', 'num_examples'))
def _descent_segment(loss_fn, x, targets, weights, hp, carry, keys, *, structure, num_examples):
  """Epochs of gradient descent, one per key: `((params, opt_state), objective after each)`."""
  epoch = step.make_epoch_fn(structure, num_examples)

  def body(carry, k):
    params, opt_state = carry
    params, opt_state, _ = epoch(params, opt_state, x, targets, k, hp, weights)
    return (params, opt_state), loss_fn(params)

  return jax.lax.scan(body, carry, keys)


def gradient_descent(
  cfg, x, targets, init, budget, loss_fn=None, run_segments=search_state.in_one, weights=None
):
  """Gradient descent (full batch if `cfg.batch_size` is 0, else mini-batch) within `budget`.

  An epoch costs `GRADIENT_COST` evaluations whatever the batch size (every
  example passes forward and backward once), so it runs `budget //
  GRADIENT_COST` epochs. The curve's training loss is measured once per
  epoch for display only; those monitoring passes are not counted. Descent
  keeps no best: its result is the last weights, their loss is `best_loss`,
  and the curve is the loss after each epoch, so a rise or a divergence
  shows (a running minimum hid one: the curve ended at the start's loss
  beside a final loss of 1e76). `weights` (`[N]`, optional) weights the
  examples, 0 on padded rows.
  """
  _check(budget=budget)
  epochs = budget // GRADIENT_COST
  if epochs < 1:
    raise ValueError(f'budget {budget} is less than one gradient evaluation ({GRADIENT_COST}).')
  x, targets = jnp.asarray(x), jnp.asarray(targets)
  n = x.shape[0]
  steps, _ = step.steps_per_epoch(cfg, n)
  hp = step.hparams(cfg)
  objective = _objective(
    loss_fn or make_loss_fn(x, targets, cfg.loss, cfg.reg, cfg.penalty, cfg.loss_hparams, weights)
  )
  opt_state = step.make_optimizer(cfg, hp, steps).init(init)
  w = None if weights is None else jnp.asarray(weights, x.dtype)
  segment = lambda carry, keys: _descent_segment(
    objective, x, targets, w, hp, carry, keys, structure=step.structural(cfg), num_examples=n
  )
  keys = jax.random.split(jax.random.PRNGKey(cfg.seed), epochs)
  (params, _), curve = run_segments(segment, (init, opt_state), keys, GRADIENT_COST)
  curve = np.asarray(curve)
  start = float(objective(init))  # op by op, as the curve has always started
  finite = np.where(np.isfinite(curve), curve, np.inf)
  name = 'gradient descent (full batch)' if steps == 1 else f'gradient descent (mini-batch {cfg.batch_size})'
  return SearchResult(
    name,
    params,
    float(finite[-1]),
    epochs * GRADIENT_COST,
    GRADIENT_COST * np.arange(epochs + 1),
    np.concatenate([[start], finite]),
  )


__all__ = [
  'GRADIENT_COST',
  'Objective',
  'SearchResult',
  'genetic_algorithm',
  'gradient_descent',
  'make_loss_fn',
  'random_local_search',
  'random_search',
]


def _check_population_fits(name, members, init, x):
  """Raises, with the figures, where `members` models like `init` (the genetic algorithm's population,
  local search's proposals), a child and a mutation of each, and their scores on the rows `x`, cannot
  fit in the device's memory: 12,000 members of 200,010 weights ran the other methods for minutes, then
  ended in a traceback."""
  weights = sum(int(np.size(a)) for a in jax.tree.leaves(init))
  need = np.dtype(x.dtype).itemsize * members * (3 * weights + x.shape[0] * init.W.shape[0])
  memory.check_memory(
    need,
    f'search on {name}',
    memory.device_memory_available(),
    advice='use a smaller --population (or --proposals).',
    what=f'a population of {members:,} models of {weights:,} weights',
  )


def compare(
  cfg,
  dataset,
  budget,
  population=100,
  elite=4,
  mutation_scale=0.1,
  step_size=0.05,
  proposals=10,
  init_scale=1.0,
  batch_size=64,
  name=None,
  segments=None,
):
  """Every method on `dataset` with the same budget: `(rows, curves)`.

  `cfg` gives the objective (loss, penalty, reg, margin) and gradient
  descent's optimizer and learning rate. Each row holds the method, its best
  training loss, the validation metric of its weights, the evaluations it
  spent and its wall time (compilation included). With `segments` (a
  `search_state.Segments`), every method checkpoints as it goes, methods
  finished before a resume are not run again, and a stop signal raises
  `preemption.Stopped` after a checkpoint.
  """
  cfg = dataclasses.replace(cfg, bias_trick=False)  # the methods keep the bias apart (`model.Params.b`)
  # Every method's arguments before any method runs (a bad elite failed after random search had).
  _check_genetic(budget, population, elite, mutation_scale, init_scale)
  _check(budget=budget, population=proposals, scale=step_size, scale_name='step_size')
  validation.check_whole('batch_size', batch_size)
  if segments is not None and not isinstance(segments, search_state.Segments):
    raise ValueError(f'segments must be a search_state.Segments or None, got {type(segments).__name__}.')
  if cfg.optimizer == 'lbfgs':  # gradient descent takes steps of an optax optimizer within the budget
    raise ValueError(
      'search races gradient descent by an optax optimizer (sgd, momentum, nesterov, adam); '
      "optimizer='lbfgs' has no step of its own there."
    )
  train.check_fit(cfg, dataset)
  # The rows on the device as training has them (a `stream.prepare`d dataset standardized there).
  path = datapath.make(cfg, dataset, resident=True)
  x, y = path.resident_split('train')
  w = path.weights('train')  # sample weights (`--class_weight`, a weight column) weigh every method's mean
  loss_fn = make_loss_fn(x, y, cfg.loss, cfg.reg, cfg.penalty, cfg.loss_hparams, w)
  key = jax.random.PRNGKey(cfg.seed)
  init = model.init_params(key, dataset.num_features, step.num_outputs(cfg, dataset), 1e-3)
  _check_population_fits(name or dataset.name, max(population, proposals), init, x)
  seg = segments.run if segments else search_state.in_one
  descent = lambda batch: gradient_descent(
    dataclasses.replace(cfg, batch_size=batch), x, y, init, budget, loss_fn, run_segments=seg, weights=w
  )
  methods = {
    'random search': lambda: random_search(loss_fn, key, init, budget, init_scale, run_segments=seg),
    'random local search': lambda: random_local_search(
      loss_fn, key, init, budget, step_size, proposals, run_segments=seg
    ),
    'genetic algorithm': lambda: genetic_algorithm(
      loss_fn, key, init, budget, population, elite, mutation_scale, init_scale, run_segments=seg
    ),
    'GD full batch': lambda: descent(0),
    'GD mini-batch': lambda: descent(batch_size),
  }
  rows, curves = [], {}
  for label, run in methods.items():
    where = f'{name or dataset.name}: {label}'
    done = segments.finished(where) if segments else None
    if done is not None:  # finished before the resume
      rows.append(done[0])
      curves[label] = done[1:]
      continue
    if segments:
      segments.label = where
    row, curve = _run_method(cfg, dataset, label, run, name or dataset.name)
    rows.append(row)
    curves[label] = curve
    if segments:
      segments.finish(where, rows[-1], *curves[label])
  return rows, curves


def _run_method(cfg, dataset, label, run, problem):
  """`(row, curve)` of one method of `compare`: `run()` timed, its weights evaluated on `dataset`."""
  import time  # pylint: disable=import-outside-toplevel

  t = time.perf_counter()
  result = run()
  seconds = time.perf_counter() - t
  finite = all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(result.params))
  # Weights a diverged descent left have no metric (their argmax is class 0 everywhere): NaN, and the row.
  metrics = train.evaluate(cfg, dataset, result.params) if finite else {'val_accuracy': float('nan')}
  row = {
    'problem': problem,
    'method': label,
    'best_train_loss': result.best_loss,
    'val_metric': metrics.get('val_accuracy', metrics.get('val_mse')),
    'evaluations': result.evaluations,
    'seconds': seconds,
  }
  return row, (result.curve_evals, result.curve_loss)
