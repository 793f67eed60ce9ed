"""The demo's learning requests: optimizer steps, the search race, and a slice of the loss surface.

Pure functions of the request, like `demo_api`: the optimizer's state (an
optax state: momentum buffers, Adam's moments, the step count of the
schedule) travels to the page and back as the list of its leaves.
"""

import functools
import math
import threading

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import grad_sources
from linear_jax.maths import losses
from linear_jax.optim import config
from linear_jax.optim import step
from linear_jax.runs import demo_api
from linear_jax.runs.demo_api import LIMITS
from linear_jax.runs.demo_api import RequestError
from linear_jax.runs.demo_api import choice
from linear_jax.runs.demo_api import field
from linear_jax.runs.demo_api import number
from linear_jax.tuning import search

SURFACE_GRID = (5, 41)  # the fewest points a side of a surface, and the most a surface asked for none gets
STEP_BUCKETS = (1, 8, 32, LIMITS['steps'])  # steps are padded up to one of these: four programs at most
# The search methods' loop lengths follow the budget, and their programs the problem's shapes, loss and
# optimizer, so each such request compiles programs of its own (about 21 MB to 100 MB): the server keeps
# those of this many, and clears JAX's caches to take one more. The same bound holds the step's programs
# for each decay rate and interval (static in them) of the schedules that read one.
SEARCH_PROGRAMS_KEPT = 8
DECAYING = ('step', 'exponential', 'inverse_time')  # the schedules that read the decay
_search_programs = set()
_decay_programs = set()
_programs_lock = threading.Lock()


def _keep_programs_of(signature, kept=None):
  """Bounds the memory of compiled programs: a `signature` (what they compile for) new to `kept` (the
  search's, by default), past `SEARCH_PROGRAMS_KEPT` others there, clears JAX's caches first (every
  program compiles again when next asked for)."""
  kept = _search_programs if kept is None else kept
  with _programs_lock:
    if signature not in kept:
      if len(kept) >= SEARCH_PROGRAMS_KEPT:
        jax.clear_caches()
        _search_programs.clear()
        _decay_programs.clear()
      kept.add(signature)


def parse_optimizer(req, p):
  """`(StepConfig, HParams, settings)` of the request's `optimizer` object."""
  o = field(req, 'optimizer', dict, {})
  where = 'optimizer'
  cfg = config.StepConfig(
    loss=p.spec.name,
    penalty=p.penalty,
    optimizer=choice(o, 'method', demo_api.OPTIMIZERS, 'sgd', where),
    schedule=choice(o, 'schedule', demo_api.SCHEDULES, 'constant', where),
    decay_rate=number(o, 'decay_rate', 0.01, 1.0, 0.5, where),
    decay_epochs=float(number(o, 'decay_steps', 1, 1e6, 100, where, integer=True)),
    batch_size=0,
    grad=choice(o, 'grad', ('analytic', 'autodiff'), 'analytic', where),
    dtype='float64',
  )
  if cfg.grad == 'analytic' and p.spec.score_grad is None:
    cfg = config.StepConfig(**{**cfg.__dict__, 'grad': 'autodiff'})
  if cfg.schedule not in DECAYING:  # the others read no decay: one program for any
    cfg = config.StepConfig(**{**cfg.__dict__, 'decay_rate': 0.5, 'decay_epochs': 100.0})
  settings = {
    'learning_rate': number(o, 'learning_rate', 1e-6, 100.0, 0.1, where),
    'momentum': number(o, 'momentum', 0.0, 0.999, 0.9, where),
    'batch_size': number(o, 'batch_size', 0, LIMITS['points'], 0, where, integer=True),
    't': number(o, 't', 0, 10**9, 0, where, integer=True),
    'seed': number(o, 'seed', 0, 2**31 - 1, 0, where, integer=True),
  }
  hp = step.HParams(
    learning_rate=jnp.float64(settings['learning_rate']),
    reg=jnp.float64(p.reg),
    loss_hparams=p.hp,
    momentum=jnp.float64(settings['momentum']),
  )
  return cfg, hp, settings, o.get('state')


def opt_state_from(leaves, template):
  """The optimizer state whose leaves the page sent back, checked against a fresh one's shapes."""
  ref, treedef = jax.tree.flatten(template)
  if leaves is None:
    return template
  if not isinstance(leaves, list) or len(leaves) != len(ref):
    raise RequestError('optimizer.state does not fit this optimizer and model; send null to start afresh.')
  out = []
  for i, (leaf, r) in enumerate(zip(leaves, ref, strict=True)):
    a = demo_api.array(leaf, np.shape(r), f'optimizer.state[{i}]', STATE_BOUND)
    if np.issubdtype(r.dtype, np.integer) and not (
      np.all(a == np.round(a)) and np.all((a >= 0) & (a < 2**31))
    ):
      raise RequestError(
        f'optimizer.state[{i}] is a step count: whole numbers in [0, 2**31), got {a.tolist()}.'
      )
    out.append(jnp.asarray(a, r.dtype))
  return jax.tree.unflatten(treedef, out)


def _minibatch(key, mask, batch_size):
  """A random `batch_size` of the rows where `mask > 0`, as 0/1 weights (all rows if fewer)."""
  u = jnp.where(mask > 0, jax.random.uniform(key, mask.shape), 2.0)
  threshold = jnp.sort(u)[jnp.clip(batch_size, 1, mask.size) - 1]
  return jnp.where((u <= threshold) & (mask > 0), 1.0, 0.0)


@functools.partial(jax.jit, static_argnames=('cfg',))
def _fresh_state(params, hp, *, cfg):
  """A fresh optimizer state for `params` (compiled: no operation runs one by one per request)."""
  return step.make_optimizer(cfg, hp, 1).init(params)


@functools.partial(jax.jit, static_argnames=('loss', 'penalty', 'cfg', 'bucket'))
def _run_steps(
  params, opt_state, x, t, mask, hp, seed, t0, num_steps, batch_size, *, loss, penalty, cfg, bucket
):
  """`bucket` scanned optimizer steps, the first `num_steps` of them applied; mini-batches drawn
  from the key `fold_in(PRNGKey(seed), t0)`.

  Returns the new `(params, opt_state)`, the full objective before each step
  `[bucket]` and the parameters after each step (the path).
  """
  apply = step.make_apply(cfg, 1)  # one "epoch" per step: the schedule decays per step
  key = jax.random.fold_in(jax.random.PRNGKey(seed), t0)

  def body(carry, i):
    params, opt_state = carry
    weights = jnp.where(batch_size > 0, _minibatch(jax.random.fold_in(key, i), mask, batch_size), mask)
    full = losses.unchecked_objective(params, x, t, loss, hp.reg, penalty, hp.loss_hparams, mask)
    _, g = grad_sources.value_and_grad(
      cfg.grad, params, x, t, loss, hp.reg, penalty, hp.loss_hparams, weights
    )
    new = apply(params, opt_state, g, hp)
    carry = jax.tree.map(lambda a, b: jnp.where(i < num_steps, a, b), new, (params, opt_state))
    return carry, (full, carry[0])

  (params, opt_state), (curve, path) = jax.lax.scan(body, (params, opt_state), jnp.arange(bucket))
  return params, opt_state, curve, path


def handle_step(req):
  """POST /api/step: `{state, optimizer, steps}` -> the state after `steps` steps, evaluated.

  The response adds `curve` (the objective before each step), `path` (`W`
  and `b` after each), the optimizer's new `state` and step count `t`, and
  the learning rate the schedule gives at that count.
  """
  p = demo_api.parse_problem(req)
  params = demo_api.parse_params(req, p)
  cfg, hp, settings, leaves = parse_optimizer(req, p)
  num = number(req, 'steps', 1, LIMITS['steps'], 1, integer=True)
  bucket = next(b for b in STEP_BUCKETS if b >= num)
  if cfg.schedule in DECAYING:  # only these compile a program per decay rate and interval
    _keep_programs_of((cfg.schedule, cfg.decay_rate, cfg.decay_epochs), _decay_programs)
  opt_state = opt_state_from(leaves, _fresh_state(params, hp, cfg=cfg))
  x, t, mask, _, _ = demo_api.problem_args(p)
  new, opt_state, curve, path = jax.device_get(_run_steps(
    params, opt_state, x, t, mask, hp, settings['seed'], settings['t'], num, settings['batch_size'],
    loss=p.spec, penalty=p.penalty, cfg=cfg, bucket=bucket,
  ))  # fmt: skip
  _check_finite(curve[:num], path, num, settings['learning_rate'])
  _check_state(opt_state)
  out = demo_api.evaluate_state(new, p)
  t_after = settings['t'] + num
  # Every step's weights, or every k-th and the last where they would be more than LIMITS['path_numbers']
  # numbers (200 steps of a CIFAR-shaped W made an answer of 140 MB).
  every = math.ceil(num / max(1, LIMITS['path_numbers'] // path.W[0].size))
  out.update(
    curve=demo_api.clean(curve[:num]),
    path=[{'W': path.W[i].tolist(), 'b': path.b[i].tolist()} for i in range(num)[::-1][::every][::-1]],
    optimizer={
      'state': [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(opt_state)],
      't': t_after,
      'learning_rate_now': float(settings['learning_rate'] * step.schedule_fn(cfg, 1)(t_after)),
      'grad': cfg.grad,
    },
  )
  return out


# The optimizer state the page may send back: any finite float64. Adam's second moment is about 1e-3·g²,
# and on points and weights within the page's bounds g reaches 1e10: a bound of 1e12 refused Adam there
# whatever the learning rate.
STATE_BOUND = float(np.finfo(np.float64).max)


def _check_state(opt_state):
  """Raises a `RequestError` (422) when the optimizer's new state is not finite, which JSON cannot carry
  back: the page keeps the state it sent."""
  for leaf in jax.tree.leaves(opt_state):
    if np.issubdtype(np.asarray(leaf).dtype, np.floating) and not np.all(np.isfinite(leaf)):
      raise demo_api.RequestError(
        "The optimizer's state is no longer finite (gradients too large for it): reset W, or take the "
        'sgd method; the model stays where it was.',
        status=422,
      )


def _check_finite(curve, path, num, learning_rate):
  """Raises a `RequestError` (422) naming the first of `num` steps after which the objective is not
  finite, or W or b not within the bounds the page's model is held to (JSON has no inf or nan, and
  the page sends the model back): the page keeps the state it sent."""
  bound = demo_api.LIMITS['weight']
  after = [(np.abs(a[:num]) <= bound).reshape(num, -1).all(1) for a in (path.W, path.b)]  # NaN fails too
  within = after[0] & after[1] & np.append(np.isfinite(curve[1:num]), True)  # curve[i + 1]: after step i
  within[0] &= np.isfinite(curve[0])
  if not within.all():
    raise demo_api.RequestError(
      f'Step {int(np.argmin(within)) + 1} of {num} diverged: the objective is no longer finite or W or b '
      f'left ±{bound:g}. Lower the learning rate ({learning_rate:g}); the model stays where it was.',
      status=422,
    )


def handle_search(req):
  """POST /api/search: the lecture's "learning is search", every method on the same budget.

  Random search, random local search and the genetic algorithm of
  `tuning.search`, with gradient descent (the request's optimizer, full
  batch) beside them; each starts from the request's `W` where it takes a
  start, spends at most `budget` loss evaluations, and returns its curve
  (best objective against evaluations spent) and the weights it found.
  """
  p = demo_api.parse_problem(req)
  params = demo_api.parse_params(req, p)
  budget = number(req, 'budget', 10, LIMITS['budget'], 1000, integer=True)
  seed = number(req, 'seed', 0, 2**31 - 1, 0, integer=True)
  if p.n == 0:
    raise RequestError('There are no points to search on.')
  per_evaluation = p.x.shape[0] * p.x.shape[1] * p.outputs
  if budget * per_evaluation > LIMITS['search_work']:
    raise RequestError(
      f'A race of {budget} evaluations a method on this data is too much work for one request; a budget '
      f'of {int(LIMITS["search_work"] // per_evaluation)} at most.'
    )
  cfg_step, _, settings, _ = parse_optimizer(req, p)
  _keep_programs_of((budget, p.x.shape, p.outputs, p.spec.name, p.penalty, repr(cfg_step)))
  # The padded rows with their mask, as every other request: the programs take the data as arguments,
  # so a race on the same budget compiles nothing whatever the points.
  x, t, mask = jnp.asarray(p.x), jnp.asarray(p.targets), jnp.asarray(p.mask)
  loss_fn = search.make_loss_fn(x, t, p.spec, p.reg, p.penalty, p.hp, mask)
  key = jax.random.PRNGKey(seed)
  population = min(50, budget)
  train_cfg = config.TrainConfig(
    loss=p.spec.name, loss_hparams={k: float(v) for k, v in p.hp.items()}, penalty=p.penalty, reg=p.reg,
    optimizer=cfg_step.optimizer, learning_rate=settings['learning_rate'], momentum=settings['momentum'],
    schedule=cfg_step.schedule, decay_rate=cfg_step.decay_rate, decay_epochs=cfg_step.decay_epochs,
    batch_size=0, grad=cfg_step.grad, dtype='float64', seed=seed,
  )  # fmt: skip
  methods = {
    'random search': lambda: search.random_search(loss_fn, key, params, budget, scale=1.0),
    'random local search': lambda: search.random_local_search(loss_fn, key, params, budget, 0.1, 10),
    'genetic algorithm': lambda: search.genetic_algorithm(
      loss_fn, key, params, budget, population, min(4, population - 1), 0.1, 1.0
    ),
    'gradient descent': lambda: search.gradient_descent(
      train_cfg, x, t, params, budget, loss_fn, weights=mask
    ),
  }
  results = []
  for name, run in methods.items():
    r = run()
    if name == 'gradient descent':
      _check_descent(r, settings['learning_rate'])
    results.append(
      {
        'method': name,
        'best_loss': float(r.best_loss) if np.isfinite(r.best_loss) else None,
        'evaluations': int(r.evaluations),
        'curve_evals': np.asarray(r.curve_evals).tolist(),
        'curve_loss': demo_api.clean(r.curve_loss),
        'model': demo_api.params_json(r.params),
      }
    )
  return {'budget': budget, 'methods': results, 'start_loss': float(loss_fn(params))}


def _check_descent(result, learning_rate):
  """Raises a `RequestError` (422) when gradient descent's last weights have no finite objective or leave
  the bounds the page's model is held to, as `_check_finite` does for steps (it answered 500, or a
  model every later request refused)."""
  bound = demo_api.LIMITS['weight']
  within = all(bool((np.abs(np.asarray(a)) <= bound).all()) for a in jax.tree.leaves(result.params))
  if not (within and np.isfinite(result.best_loss)):
    raise demo_api.RequestError(
      f'Gradient descent diverged within the budget: the objective is no longer finite or W or b left '
      f'±{bound:g}. Lower the learning rate ({learning_rate:g}); the model stays where it was.',
      status=422,
    )


@functools.partial(jax.jit, static_argnames=('loss', 'penalty'))
def _surface(params, d1, d2, alphas, x, t, mask, reg, hp, *, loss, penalty):
  """The objective at `params + a·d1 + b·d2` for every `a, b` in `alphas`: `[G, G]` (rows: b)."""
  v, unravel = ravel_pytree(params)
  ga, gb = jnp.meshgrid(alphas, alphas)
  at = lambda ab: losses.unchecked_objective(
    unravel(v + ab[0] * d1 + ab[1] * d2), x, t, loss, reg, penalty, hp, mask
  )
  values = jax.lax.map(at, jnp.stack([ga.ravel(), gb.ravel()], axis=1), batch_size=256)
  return values.reshape(ga.shape)


def handle_surface(req):
  """POST /api/surface: the objective on a plane through the current weights, and the path on it.

  The plane is spanned by `d1`, the unit vector from the path's first weights
  to the current ones (the steepest-descent direction when there is no path),
  and `d2`, a fixed random unit vector orthogonal to it. The path is
  projected on the plane; `grid` points a side, over `±radius`.
  """
  p = demo_api.parse_problem(req)
  params = demo_api.parse_params(req, p)
  per_point = max(p.n, 1) * p.x.shape[1] * p.outputs
  # Without a grid, the finest up to 41 a side that the data allow (7 on 300 CIFAR-shaped images).
  fits = max(SURFACE_GRID[0], min(SURFACE_GRID[1], math.isqrt(int(LIMITS['surface_work'] // per_point))))
  size = number(req, 'grid', SURFACE_GRID[0], LIMITS['grid'], fits, integer=True)
  work = size * size * per_point
  if work > LIMITS['surface_work']:
    raise RequestError(
      f'A surface of {size}×{size} on this data is too much work for one request; ask a smaller grid.'
    )
  path = field(req, 'path', list, [])
  if len(path) > LIMITS['path']:
    raise RequestError(f'At most {LIMITS["path"]} weights on a path, got {len(path)}.', 413)
  v = ravel_pytree(params)[0]
  points = [ravel_pytree(demo_api.parse_params({'m': m}, p, 'm'))[0] for m in path]
  x, t, mask, reg, hp = demo_api.problem_args(p)
  d1 = points[0] - v if points else jnp.zeros_like(v)
  if float(jnp.linalg.norm(d1)) < 1e-9:
    d1 = -ravel_pytree(
      jax.grad(losses.unchecked_objective)(params, x, t, p.spec, reg, p.penalty, p.hp, mask)
    )[0]
  if float(jnp.linalg.norm(d1)) < 1e-12:
    d1 = jnp.zeros_like(v).at[0].set(1.0)
  d1 = d1 / jnp.linalg.norm(d1)
  d2 = jax.random.normal(jax.random.PRNGKey(7), v.shape, v.dtype)
  d2 = d2 - (d2 @ d1) * d1
  d2 = d2 / jnp.linalg.norm(d2)
  coords = np.array([[float((q - v) @ d1), float((q - v) @ d2)] for q in points]).reshape(-1, 2)
  # Without a radius, one that holds the path: a client who sent none is not told its radius is bad.
  fits_path = min(1e3, max(1.0, 1.25 * float(np.max(np.abs(coords), initial=0.0))))
  radius = number(req, 'radius', 1e-3, 1e3, fits_path)
  alphas = jnp.linspace(-radius, radius, size)
  _keep_programs_of(('surface', size, p.x.shape, p.outputs, p.spec.name, p.penalty))  # one per grid size
  values = _surface(params, d1, d2, alphas, x, t, mask, reg, hp, loss=p.spec, penalty=p.penalty)
  return {'grid': size, 'radius': radius, 'values': demo_api.clean(values), 'path': coords.tolist()}
