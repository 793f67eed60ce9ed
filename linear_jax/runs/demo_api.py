"""The demo page's requests, as pure functions: a decoded JSON object in, a JSON-ready dict out.

The page sends its whole state with each request: the points and labels (or
the name of an image set), `W` and `b`, the loss, its hyperparameters, the
penalty and λ, and the optimizer's state. The server keeps none, so two tabs
never share anything. Every field is checked here; a bad one raises
`RequestError` with the HTTP status and a message naming the field.

All maths is the library's, in float64 (the demo enables `jax_enable_x64`):
`losses.unchecked_objective` (the objective without host checks, as the
training step uses it), `grads.unchecked_analytic_grad` (the hand-derived
gradient), `jax.grad` of the objective, central differences, the project's
optimizers and schedules (`optim.step`), and the search methods
(`tuning.search`). Point sets are padded to `PAD` rows with mask 0, so moving,
adding or removing a point never recompiles: a program is compiled once per
loss, penalty and shape of `W`.
"""

import functools
import math
from typing import NamedTuple

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import gradcheck
from linear_jax.maths import grads
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.runs import demo_data
from linear_jax.runs import hard_cases

# The most work one request may ask for.
LIMITS = {
  'points': 500,  # examples in a point set
  'classes': 10,
  'steps': 200,  # optimizer steps per request
  'grid': 101,  # side of a region or surface grid
  'budget': 5000,  # loss evaluations per search method
  'path': 1000,  # weights on a descent path sent back for the surface
  'coordinate': 1e3,  # |x| of a point, and the view box
  'weight': 1e4,  # |W|, |b|
  'surface_work': 5e8,  # grid² · examples · features · outputs of one surface
  'search_work': 2e10,  # budget · examples · features · outputs of one race (a few seconds)
  'path_numbers': 60_000,  # numbers of the weights a step's answer lists on its path (a body of ~1 MB)
}
PAD = 512  # rows every point set is padded to (> LIMITS['points'])
# Bytes of one request body: a CIFAR-shaped W is 30,720 numbers, and a step sends W, b and Adam's two
# moments of each (JSON, up to 25 bytes a number: 3 MB); 2 MiB refused Adam's state after a few steps.
MAX_BODY = 8 << 20
FEATURES = ('none', *hard_cases.FEATURE_MAPS)
OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam')
SCHEDULES = ('constant', 'step', 'exponential', 'inverse_time')
GRAD_STEP = 1e-5  # central-difference step, float64
CHECKED_COORDS = 64  # coordinates checked by finite differences when W has more than 256 entries
REGION_GRID = 81


class RequestError(ValueError):
  """A request the demo refuses: `status` is the HTTP status (4xx), the message says why."""

  def __init__(self, message, status=400):
    super().__init__(message)
    self.status = status


# ---------------------------------------------------------------- reading fields


def field(obj, name, kind, default=None, where='request'):
  """`obj[name]` checked to be of `kind` (a type or tuple of types); `default` when absent."""
  if not isinstance(obj, dict):
    raise RequestError(f'{where} must be a JSON object.')
  if name not in obj or obj[name] is None:
    if default is None:
      raise RequestError(f'{where}: field {name!r} is missing.')
    return default
  value = obj[name]
  if kind in (int, float) and isinstance(value, bool):
    raise RequestError(f'{where}: field {name!r} must be a number, got a boolean.')
  if kind is float and isinstance(value, int):
    try:
      value = float(value)
    except OverflowError:  # JSON integers have no bound: 10**400 is no float
      raise RequestError(f'{where}: field {name!r} is an integer of {len(str(abs(value)))} digits.') from None
  if not isinstance(value, kind):
    raise RequestError(f'{where}: field {name!r} has the wrong type ({type(value).__name__}).')
  return value


def number(obj, name, low, high, default=None, where='request', integer=False):
  """A finite number in `[low, high]`."""
  value = field(obj, name, int if integer else float, default, where)
  if not (low <= value <= high and math.isfinite(value)):  # the bounds first: a huge int is no float
    shown = (
      f'an integer of {len(str(abs(value)))} digits'
      if isinstance(value, int) and abs(value) > 1e15
      else repr(value)
    )
    raise RequestError(f'{where}: field {name!r} must be finite and in [{low:g}, {high:g}], got {shown}.')
  return value


def choice(obj, name, options, default=None, where='request'):
  value = field(obj, name, str, default, where)
  if value not in options:
    raise RequestError(f'{where}: field {name!r} must be one of {", ".join(options)}, got {value[:40]!r}.')
  return value


def _numbers_only(value):
  """Whether every leaf of the nested list `value` is a JSON number: not a string NumPy would parse,
  not a boolean it would read as 0 or 1, not a null."""
  stack = [value]
  while stack:
    v = stack.pop()
    if isinstance(v, list):
      stack.extend(v)
    elif isinstance(v, bool) or not isinstance(v, (int, float)):
      return False
  return True


def array(value, shape, name, bound, dtype=np.float64):
  """A nested list of JSON numbers as an array of `shape` (None: any length), finite and within `±bound`."""
  if not _numbers_only(value):
    raise RequestError(
      f'{name} must be an array of numbers of shape {list(shape)} '
      '(numbers only: no strings, booleans or nulls).'
    )
  try:
    a = np.asarray(value, dtype=dtype)
  except (TypeError, ValueError, OverflowError):
    raise RequestError(f'{name} must be an array of numbers of shape {list(shape)}.') from None
  if a.shape == (0,) and shape and shape[0] is None and None not in shape[1:]:  # [] of rows: no rows
    a = a.reshape((0, *shape[1:]))
  if a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape, strict=True)):
    raise RequestError(f'{name} must have shape {list(shape)}, got {list(a.shape)}.')
  if not (np.all(np.isfinite(a)) and np.all(np.abs(a) <= bound)):
    raise RequestError(f'{name} must hold finite numbers within ±{bound:g}.')
  return a


# ---------------------------------------------------------------- the problem a request states


class Problem(NamedTuple):
  """The data and objective of one request, padded to fixed shapes.

  x: `[PAD, D]` features (after the feature map, if any); targets: `[PAD]`
  labels, or `[PAD, C]` one-hot targets for a regression loss; mask: `[PAD]`
  1 on the `n` real rows; points: `[n, 2]` what the geometric panel draws.
  """

  x: np.ndarray
  targets: np.ndarray
  mask: np.ndarray
  n: int
  labels: np.ndarray
  points: np.ndarray
  num_classes: int
  outputs: int
  spec: losses.Loss
  penalty: str
  reg: float
  hp: dict
  features: str
  view: list | None
  image: tuple | None  # (image_shape, class_names) of an image set


def loss_spec(req):
  """The registered loss the request names; a name only, never a file or a module."""
  name = field(req, 'loss', str, 'softmax')
  if name not in losses.LOSSES:
    raise RequestError(f'Unknown loss {name[:60]!r}; the server knows {", ".join(sorted(losses.LOSSES))}.')
  return losses.LOSSES[name]


def loss_hparams(req, spec):
  given = field(req, 'hparams', dict, {})
  try:
    hp = spec.resolve_hparams({k: number(given, k, -1e3, 1e3, where='hparams') for k in given})
  except ValueError as e:
    raise RequestError(str(e)) from None
  return {k: np.float64(v) for k, v in hp.items()}


def _point_data(req):
  """`(x [n, D], points [n, 2], labels [n], classes, features, view)` of a point set."""
  classes = number(req, 'num_classes', 2, LIMITS['classes'], integer=True)
  pts = field(req, 'points', list)
  if len(pts) > LIMITS['points']:
    raise RequestError(f'At most {LIMITS["points"]} points, got {len(pts)}.', 413)
  points = array(pts, (None, 2), 'points', LIMITS['coordinate']).reshape(-1, 2)
  labels = array(field(req, 'labels', list), (len(points),), 'labels', classes, np.float64)
  if np.any(labels != np.round(labels)) or np.any(labels < 0) or np.any(labels >= classes):
    raise RequestError(f'labels must be whole numbers in [0, {classes}).')
  view = array(field(req, 'view', list), (4,), 'view', LIMITS['coordinate']).tolist()
  if not (view[0] < view[1] and view[2] < view[3]):
    raise RequestError('view must be [x_min, x_max, y_min, y_max] with min < max.')
  features = choice(req, 'features', FEATURES, 'none')
  x = points if features == 'none' else hard_cases.FEATURE_MAPS[features](points)
  return x, points, labels.astype(np.int64), classes, features, view


def _image_data(req, name):
  n = number(req, 'n', 20, LIMITS['points'], 300, integer=True)
  seed = number(req, 'seed', 0, 2**31 - 1, 0, integer=True)
  x, y, shape, names, projection = demo_data.image_set(name, n, seed)
  lo, hi = projection.min(axis=0), projection.max(axis=0)
  pad = 0.05 * (hi - lo)
  view = [float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1])]
  return x, projection, y, 10, 'none', view, (shape, names)


def parse_problem(req):
  """The `Problem` of a request: its data, loss, hyperparameters, penalty and λ, checked."""
  spec = loss_spec(req)
  dataset = field(req, 'dataset', str, 'points')
  if dataset in demo_data.IMAGE_SETS:
    x, points, labels, classes, features, view, image = _image_data(req, dataset)
  elif dataset == 'points':
    (x, points, labels, classes, features, view), image = _point_data(req), None
  else:
    raise RequestError(f'Unknown dataset {dataset[:40]!r}; valid: points, {", ".join(demo_data.IMAGE_SETS)}.')
  if spec.targets == 'binary' and classes != 2:
    raise RequestError(f'Loss {spec.name!r} is binary (one score, labels 0 and 1): it needs 2 classes.')
  n = len(labels)
  outputs = 1 if spec.targets == 'binary' else classes
  xp = np.zeros((PAD, x.shape[1]))
  xp[:n] = x
  lp = np.zeros(PAD, np.int64)
  lp[:n] = labels
  targets = np.eye(classes)[lp] if spec.targets == 'real' else lp  # regression on one-hot targets
  mask = (np.arange(PAD) < n).astype(np.float64)
  penalty = choice(req, 'penalty', tuple(losses.PENALTIES), 'l2')
  reg = number(req, 'reg', 0.0, 100.0, 0.0)
  hp = loss_hparams(req, spec)
  return Problem(
    xp, targets, mask, n, labels, points, classes, outputs, spec, penalty, reg, hp, features, view, image
  )


def parse_params(obj, problem, name='model'):
  """`Params` from `{'W': [[...]], 'b': [...]}`, of the shape the problem needs."""
  c, d = problem.outputs, problem.x.shape[1]
  m = field(obj, name, dict)
  shape_hint = f' (loss {problem.spec.name!r} on this data needs W of shape [{c}, {d}]; ask /api/init)'
  try:
    w = array(field(m, 'W', list, where=name), (c, d), f'{name}.W', LIMITS['weight'])
    b = array(field(m, 'b', list, where=name), (c,), f'{name}.b', LIMITS['weight'])
  except RequestError as e:
    raise RequestError(str(e) + shape_hint) from None
  return model.Params(W=jnp.asarray(w), b=jnp.asarray(b))


def params_json(params):
  return {'W': np.asarray(params.W).tolist(), 'b': np.asarray(params.b).tolist()}


def clean(a):
  """A float array as nested lists, non-finite values as None (JSON has no inf or nan)."""
  a = np.asarray(a, np.float64)
  return np.where(np.isfinite(a), a, None).tolist()


# ---------------------------------------------------------------- compiled programs


def _coords(size):
  """The coordinates checked by finite differences: all, or `CHECKED_COORDS` spread evenly."""
  if size <= 256:
    return np.arange(size)
  return np.unique(np.linspace(0, size - 1, CHECKED_COORDS).astype(np.int64))


def _central_differences(params, x, t, mask, reg, hp, coords, loss, penalty):
  """`(numerical [k], at_kink [k])`: central differences on `coords` of the flat parameters, and
  whether the step ±h crossed a kink of the loss or the penalty (`gradcheck`'s kink functions)."""
  v, unravel = ravel_pytree(params)
  f = lambda w: losses.unchecked_objective(unravel(w), x, t, loss, reg, penalty, hp, mask)
  kinks = gradcheck._objective_fns(loss, penalty)[1]  # noqa: SLF001 - the checker's own kink rule
  state = lambda w: jnp.zeros((1,)) if kinks is None else jnp.sign(kinks(unravel(w), x, t, reg, hp, mask))
  base = state(v)

  def probe(i):
    e = jnp.zeros_like(v).at[i].set(GRAD_STEP)
    crossed = jnp.any(state(v + e) != base) | jnp.any(state(v - e) != base)
    return (f(v + e) - f(v - e)) / (2 * GRAD_STEP), crossed

  return jax.lax.map(probe, coords, batch_size=8)


@functools.partial(jax.jit, static_argnames=('loss', 'penalty'))
def _evaluate(params, x, t, mask, reg, hp, coords, grid, *, loss, penalty):
  """Everything one answer needs, as one compiled program (one dispatch, one transfer back).

  Scores, per-example losses, the objective's parts; the flat autodiff and
  hand-derived gradients, and central differences on `coords` with the kinks
  they cross; and the class each point of `grid` (`[G², D]`, or None) wins.
  Compiled once per loss, penalty and shape: the point sets are padded.
  """
  s = model.scores(params, x)
  autodiff = jax.grad(losses.unchecked_objective)(params, x, t, loss, reg, penalty, hp, mask)
  numerical, kink = _central_differences(params, x, t, mask, reg, hp, coords, loss, penalty)
  out = {
    'scores': s,
    'losses': loss.value(s, t, **hp),
    'data_loss': losses.unchecked_objective(params, x, t, loss, 0.0, penalty, hp, mask),
    'penalty': losses.PENALTIES[penalty](model.penalized_weights(params)),
    'total': losses.unchecked_objective(params, x, t, loss, reg, penalty, hp, mask),
    'predictions': model.predict(params, x),
    'autodiff': ravel_pytree(autodiff)[0],
    'numerical': numerical,
    'at_kink': kink,
  }
  if loss.score_grad is not None:
    analytic = grads.unchecked_analytic_grad(params, x, t, loss, reg, penalty, hp, mask)
    out['analytic'] = ravel_pytree(analytic)[0]
  if grid is not None:
    out['regions'] = model.predict(params, grid)
  return out


def problem_args(p):
  return jnp.asarray(p.x), jnp.asarray(p.targets), jnp.asarray(p.mask), jnp.float64(p.reg), p.hp


# ---------------------------------------------------------------- the three viewpoints


def gradient_check(params, coords, out):
  """The live gradient check: hand-derived, autodiff and central differences side by side.

  `out` is `_evaluate`'s answer on the host. Returns per checked coordinate
  its name, the three values, the relative errors and whether it sits at a
  kink, and the largest relative errors (away from kinks, where only a
  subgradient exists).
  """
  size = int(out['autodiff'].size)
  names = gradcheck.coordinate_names(params)
  numerical, kink = out['numerical'], out['at_kink']
  autodiff = out['autodiff'][coords]
  hand = out['analytic'][coords] if 'analytic' in out else None
  pairs = {'autodiff_vs_numerical': (autodiff, numerical)}
  if hand is not None:
    pairs = {'analytic_vs_autodiff': (hand, autodiff), 'analytic_vs_numerical': (hand, numerical), **pairs}
  # As the checker reads them (`gradcheck.THRESHOLDS`, float64): two values both 0 up to round-off agree,
  # where a relative error of rounding noise against an exact 0 read as 100%.
  floor = gradcheck.THRESHOLDS['float64']
  atol = {k: floor['central' if k.endswith('numerical') else 'autodiff'][1] for k in pairs}
  with np.errstate(invalid='ignore'):
    rel = {
      k: np.where(np.maximum(np.abs(a), np.abs(b)) <= atol[k], 0.0, gradcheck.relative_error(a, b))
      for k, (a, b) in pairs.items()
    }
  smooth = ~kink
  return {
    'coordinates': [names[i] for i in coords],
    'analytic': None if hand is None else clean(hand),
    'autodiff': clean(autodiff),
    'numerical': clean(numerical),
    'relative_error': {k: clean(v) for k, v in rel.items()},
    'at_kink': kink.tolist(),
    'max_relative_error': {k: _largest(v[smooth]) for k, v in rel.items()},
    'max_relative_error_at_kinks': {k: _largest(v[kink]) for k, v in rel.items()},
    'checked': int(len(coords)),
    'total': size,
    'h': GRAD_STEP,
  }


def _largest(rel):
  """The largest relative error for JSON: `None` if one is NaN (a gradient that is not finite has no
  relative error, `gradcheck.relative_error`), as `clean` writes it."""
  return None if np.isnan(rel).any() else float(np.max(rel, initial=0.0))


def zero_lines(params, view):
  """Each output's zero-score line `w_c·x + b_c = 0`, clipped to `view`, with its unit normal.

  `anchor` is the point of the line nearest the view's centre, where the page
  draws the arrow of the direction the score grows and the rotation handle.
  """
  w, b = np.asarray(params.W), np.asarray(params.b)
  x0, x1, y0, y1 = view
  centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
  lines = []
  for c in range(w.shape[0]):
    norm = float(np.linalg.norm(w[c]))
    if norm < 1e-12:
      lines.append(None)
      continue
    anchor = centre - (w[c] @ centre + b[c]) / norm**2 * w[c]
    direction = np.array([-w[c, 1], w[c, 0]]) / norm
    lo, hi = -np.inf, np.inf
    for k, (a, z) in enumerate(((x0, x1), (y0, y1))):  # Liang–Barsky clipping of anchor + t·direction
      if abs(direction[k]) < 1e-15:
        if not a <= anchor[k] <= z:
          lo, hi = 1.0, 0.0
        continue
      t1, t2 = sorted(((a - anchor[k]) / direction[k], (z - anchor[k]) / direction[k]))
      lo, hi = max(lo, t1), min(hi, t2)
    visible = bool(lo < hi)
    lines.append(
      {
        'p1': (anchor + lo * direction).tolist() if visible else None,
        'p2': (anchor + hi * direction).tolist() if visible else None,
        'anchor': anchor.tolist(),
        'normal': (w[c] / norm).tolist(),
        'norm': norm,
        'visible': visible,
      }
    )
  return lines


@functools.lru_cache(maxsize=64)
def region_grid(view, features, size=REGION_GRID):
  """The `size × size` grid over `view` (row 0 at the top), through the feature map: `[size², D]`.

  Cached: a drag or a step keeps the view, so the grid is built once.
  """
  x0, x1, y0, y1 = view
  gx, gy = np.meshgrid(np.linspace(x0, x1, size), np.linspace(y1, y0, size))
  grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
  if features != 'none':
    grid = hard_cases.FEATURE_MAPS[features](grid)
  return grid


def regions(classes, size=REGION_GRID):
  """The class each cell of the grid wins, as a string of `size²` digits (row 0 at the top).

  One character a cell (at most 10 classes): a third of the bytes of a JSON list of numbers.
  """
  return {'size': size, 'classes': ''.join(map(str, np.asarray(classes).tolist()))}


def templates(params, image_shape):
  """Each row of `W` as a picture: `[C][H·W·channels]` bytes, min-max scaled per template, channels last."""
  out = []
  for row in np.asarray(params.W):
    img = row.reshape(image_shape)
    if img.ndim == 3:
      img = np.transpose(img, (1, 2, 0))
    lo, hi = float(img.min()), float(img.max())
    out.append(np.round(255 * (img - lo) / (hi - lo if hi > lo else 1.0)).astype(int).ravel().tolist())
  return out


def evaluate_state(params, p):
  """Everything the page draws for one state: the three viewpoints and the gradient check."""
  size = int(params.W.size + params.b.size)
  coords = _coords(size)
  grid = region_grid(tuple(p.view), p.features) if p.image is None else None
  out = jax.device_get(_evaluate(params, *problem_args(p), coords, grid, loss=p.spec, penalty=p.penalty))
  n = p.n
  predictions = out['predictions'][:n]
  data_loss, pen = float(out['data_loss']), float(out['penalty'])
  result = {
    'model': params_json(params),
    'scores': clean(out['scores'][:n]),
    'losses': clean(out['losses'][:n]),
    'predictions': predictions.tolist(),
    'accuracy': float(np.mean(predictions == p.labels)) if n else None,
    'data_loss': data_loss,
    'penalty': pen,
    'reg_penalty': p.reg * pen,
    'total': float(out['total']),
    'gradcheck': gradient_check(params, coords, out),
    'smooth': p.spec.smooth and p.penalty != 'l1',
  }
  if p.image is None:
    result['regions'] = regions(out['regions'])
    result['lines'] = zero_lines(params, p.view) if p.features == 'none' else None
  else:
    result['templates'] = templates(params, p.image[0])
    result['image_shape'] = list(p.image[0])
    result['points'] = np.round(p.points, 4).tolist()
    result['labels'] = p.labels.tolist()
    result['view'] = p.view
  return result


# ---------------------------------------------------------------- the routes


def handle_evaluate(req):
  """POST /api/evaluate: `{state}` -> the evaluation of that state."""
  p = parse_problem(req)
  return evaluate_state(parse_params(req, p), p)


def handle_init(req):
  """POST /api/init: `{state without model, seed, scale}` -> fresh `W` (N(0, scale²)), zero `b`, evaluated."""
  p = parse_problem(req)
  seed = number(req, 'seed', 0, 2**31 - 1, 0, integer=True)
  default = 1.0 if p.image is None else 0.01
  scale = number(req, 'scale', 0.0, 100.0, default)
  params = model.init_params(jax.random.PRNGKey(seed), p.x.shape[1], p.outputs, scale, jnp.float64)
  if p.image is None and p.features == 'none':  # lines through the view's centre region
    params = params._replace(b=jnp.asarray(-np.asarray(params.W) @ _centre(p.view)))
  largest = float(np.max(np.abs(np.concatenate([np.ravel(params.W), np.ravel(params.b)]))))
  if largest > LIMITS['weight']:  # the page sends the model back: within the bounds it is held to
    raise RequestError(
      f"These initial weights (scale {scale:g}) would put a line through the view's centre with a bias of "
      f'{largest:.4g}, past ±{LIMITS["weight"]:g}; ask for a smaller scale, or a view nearer the origin.',
      status=422,
    )
  return evaluate_state(params, p)


def _centre(view):
  return np.array([(view[0] + view[1]) / 2, (view[2] + view[3]) / 2])


def handle_drag(req):
  """POST /api/drag: move output `row`'s zero-score line, then evaluate.

  `drag = {'row': c, 'kind': 'shift', 'to': [x, y]}` moves the line through
  `to` (changes `b_c` only); `{'kind': 'rotate', 'anchor': a, 'to': q}` turns
  `w_c` to point from `a` to `q`, keeping `‖w_c‖` and the line through `a`.
  """
  p = parse_problem(req)
  if p.image is not None or p.features != 'none':
    raise RequestError('Lines can be dragged on 2-D points without a feature map only.')
  params = parse_params(req, p)
  drag = field(req, 'drag', dict)
  row = number(drag, 'row', 0, p.outputs - 1, where='drag', integer=True)
  kind = choice(drag, 'kind', ('shift', 'rotate'), where='drag')
  to = array(field(drag, 'to', list, where='drag'), (2,), 'drag.to', LIMITS['coordinate'])
  w, b = np.array(params.W), np.array(params.b)
  if kind == 'rotate':
    anchor = array(field(drag, 'anchor', list, where='drag'), (2,), 'drag.anchor', LIMITS['coordinate'])
    direction = to - anchor
    if np.linalg.norm(direction) > 1e-9:
      w[row] = np.linalg.norm(w[row]) * direction / np.linalg.norm(direction)
    b[row] = -w[row] @ anchor
  else:
    b[row] = -w[row] @ to
  if max(abs(b[row]), *np.abs(w[row])) > LIMITS['weight']:  # the page sends the model back: within bounds
    raise RequestError(
      f'This drag would move row {row} of the model to W {np.round(w[row], 1).tolist()}, b {b[row]:.4g}, '
      f'past ±{LIMITS["weight"]:g}; drag nearer the points.',
      status=422,
    )
  return evaluate_state(model.Params(W=jnp.asarray(w), b=jnp.asarray(b)), p)


def handle_dataset(req):
  """POST /api/dataset: `{name, n, seed}` -> a 2-D point set for the page (image sets: their size)."""
  names = (*demo_data.POINT_SETS, *demo_data.IMAGE_SETS)
  name = choice(req, 'name', names)
  n = number(req, 'n', 4, LIMITS['points'], 90, integer=True)
  seed = number(req, 'seed', 0, 2**31 - 1, 0, integer=True)
  if name in demo_data.IMAGE_SETS:
    return {'dataset': name, 'n': min(n, LIMITS['points']), 'seed': seed, 'num_classes': 10}
  return {'dataset': 'points', **demo_data.point_set(name, n, seed)}


def config(default_loss='svm'):
  """GET /api/config: the registered losses with their hyperparameters, and everything else the
  page offers, with the bounds the server enforces."""
  loss_list = []
  for name, spec in losses.LOSSES.items():
    hp = {
      k: {'default': v, 'bounds': [b if math.isfinite(b) else 1e3 for b in spec.bound(k)]}
      for k, v in spec.hparams.items()
    }
    loss_list.append({'name': name, 'targets': spec.targets, 'hparams': hp, 'smooth': spec.smooth})
  return {
    'losses': loss_list,
    'default_loss': default_loss,
    'penalties': list(losses.PENALTIES),
    'point_sets': {k: v[0] for k, v in demo_data.POINT_SETS.items()},
    'image_sets': dict(demo_data.IMAGE_SETS),
    'features': list(FEATURES),
    'optimizers': list(OPTIMIZERS),
    'schedules': list(SCHEDULES),
    'limits': LIMITS,
    'max_body': MAX_BODY,
  }
