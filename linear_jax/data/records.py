"""Records: `Raw` (a dataset as loaded) and `Dataset` (splits ready for training), and what they mean.

How arrays become these records, each checked on the host, is `build.py`'s
job; here are the records themselves, the scaling of real targets
(`standardize_targets`, `in_target_units`, `gradient_scale`) and whether targets fit a loss
(`fits_loss`).
"""

import dataclasses

import numpy as np

from linear_jax.data import chunks
from linear_jax.maths import loss_probe


@dataclasses.dataclass(frozen=True)
class Raw:
  """A dataset as loaded: features, targets and what is known about them.

  Attributes:
    x: `[N, D]` float features in their original units.
    y: `[N]` integer labels or `[N]` / `[N, K]` real targets.
    kind: `'class'` or `'real'` (two-class data also fits binary losses).
    num_classes: number of classes (`None` for real targets).
    image_shape: `(H, W)` or `(C, H, W)` if each row is an image, else `None`.
    class_names: names of the classes, if known.
    test: an official `(x, y)` test split, if the format has one.
    extra: anything a generator knows (e.g. the true `W*` of `linreg`).
    w: `[N]` non-negative sample weights, or `None` (all 1).
    w_test: `[N_test]` weights of the test split, or `None`.
  """

  x: np.ndarray
  y: np.ndarray
  kind: str
  num_classes: int | None = None
  image_shape: tuple | None = None
  class_names: tuple | None = None
  test: tuple | None = None
  extra: dict = dataclasses.field(default_factory=dict)
  w: np.ndarray | None = None
  w_test: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train / validation / test splits, preprocessed, ready for training.

  Features `x_*` are `(x_raw − shift) / scale`, fitted on the training split
  (`params_to_raw` folds that back into the weights), held in
  `host_dtype(file dtype, training dtype)`: float16 / bfloat16 / float32
  files keep their dtype. `w_*` are `[n]` float sample weights (the data's
  own, times the class weights if asked for), or `None` when every example
  weighs 1 or the split is empty. Real targets `y_*` are `(y_raw − target_shift) /
  target_scale` (a float; `[K]` for `[N, K]` targets) when the features are
  standardized (`standardize_targets`); `target_shift` and `target_scale` are
  `None` otherwise, and for classes. `feature_spread` is the median standard
  deviation of the varying training features as stored (1 when standardized),
  measured by `prepare`; `None` leaves it to `feature_spread` to measure.
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  kind: str
  num_classes: int | None
  shift: np.ndarray
  scale: np.ndarray
  image_shape: tuple | None = None
  class_names: tuple | None = None
  extra: dict = dataclasses.field(default_factory=dict)
  w_train: np.ndarray | None = None
  w_val: np.ndarray | None = None
  w_test: np.ndarray | None = None
  target_shift: np.ndarray | None = None
  target_scale: float | np.ndarray | None = None
  feature_spread: float | None = None  # `chunks.typical_spread` of x_train (`feature_spread`)

  @property
  def num_features(self):
    return np.shape(self.x_train)[1]


def standardize_targets(ys: dict, kind: str, preprocess: str):
  """`(ys, shift, scale)`: real targets centered and scaled by statistics of the training split.

  With `preprocess='standardize'` real targets become `(y − shift) / scale`:
  `shift` is each target column's mean and `scale` its standard deviation
  (`spread`; one number for `[N]` targets, `[K]` for `[N, K]` ones, as
  scikit-learn's `StandardScaler` scales each column). The step size, the
  penalty's weight and the stopping test then mean the same in any units of
  the targets, and outputs in units a million times apart are fitted alike.
  Each output's mean squared error in its own units is `scale²` times the
  trained one (`in_target_units`). Class labels, and any other `preprocess`,
  are left as they are (`shift` and `scale` `None`).
  """
  if kind != 'real' or preprocess != 'standardize' or len(ys['train']) == 0:
    return ys, None, None
  train = np.asarray(ys['train'], np.float64)
  shift = train.mean(axis=0)
  scale = spread(train) if train.ndim == 1 else np.array([spread(c) for c in train.T])
  return {s: (np.asarray(y, np.float64) - shift) / scale for s, y in ys.items()}, shift, scale


def spread(y) -> float:
  """The scale of one column of real targets `y` (`[N]`): their standard deviation, in float64; 1 when
  they are all equal, or there are none."""
  y = np.asarray(y, np.float64)
  if y.size == 0:
    return 1.0
  scale = float(np.sqrt(np.mean(np.square(y - y.mean(axis=0)))))
  return scale if scale > 0 and np.isfinite(scale) else 1.0


def raw_target_spread(dataset) -> float:
  """The `spread` of `dataset`'s training targets when they are real and left in their own units (any
  `preprocess` but `'standardize'`; for `[N, K]` targets the smallest of its varying columns'), else 1."""
  if dataset.kind != 'real' or getattr(dataset, 'target_scale', None) is not None:
    return 1.0
  y = np.asarray(dataset.y_train)
  if y.ndim == 1:
    return spread(y)
  varying = [c for c in y.T if np.ptp(c) > 0]  # a constant column's stand-in of 1 is no unit
  return min(spread(c) for c in varying) if varying else 1.0


def feature_spread(dataset) -> float:
  """`dataset.feature_spread`, or where it is `None` (a `Dataset` built by hand, its `x_train` as training
  sees it) the median spread of the varying training features, measured now (`chunks.column_spread`)."""
  given = getattr(dataset, 'feature_spread', None)
  return float(given) if given is not None else chunks.column_spread(np.asarray(dataset.x_train))


def gradient_scale(dataset, loss, hparams) -> float:
  """What a gradient-norm tolerance of `loss` (a `Loss`, with `hparams`) is multiplied by on `dataset`,
  so that the test asks in the data's units what it asks of standardized data:

  * the features' factor, `min(1, feature_spread)`: a weight's gradient entry is its feature's spread
    times the standardized problem's, so features in millionths would meet a fixed tolerance at the
    start. The median spread tests features of one unit as standardized data would (and the biases',
    and those of features spread wider than 1, more strictly); one of a spread far below the others'
    (a rarely lit pixel) less strictly: the smallest spread made such a test unreachable in float32;
  * the targets' factor, `raw_target_spread`, where the loss is quadratic in targets of that spread
    (the squared error: `loss_probe.quadratic_in_targets`), else 1: the squared error's gradient grows with
    the targets' units; l1's and Huber's are bounded in any units.
  """
  target = raw_target_spread(dataset)
  if target != 1.0 and not loss_probe.quadratic_in_targets(loss, hparams, target):
    target = 1.0
  return target * min(1.0, feature_spread(dataset))


def in_target_units(dataset, metrics: dict) -> dict:
  """`metrics` with every MSE and MAE (keys ending in `mse` / `mae`) in the targets' own units.

  For `[N, K]` real targets each of them is per output (`[..., K]`, `step.make_eval_fn`): scaled by its
  output's `target_scale` and then averaged over the outputs, one number (per model, under `vmap`).
  """
  scale = getattr(dataset, 'target_scale', None)
  per_output = getattr(dataset, 'kind', None) == 'real' and np.ndim(dataset.y_train) == 2
  if scale is None and not per_output:
    return metrics
  scale = 1.0 if scale is None else scale  # a float is weakly typed: float32 metrics stay float32
  power = {'mse': 2, 'mae': 1}
  out = dict(metrics)
  factor = scale if isinstance(scale, float) else np.asarray(scale)
  for k, v in metrics.items():
    if k[-3:] in power:
      n = power[k[-3:]]
      if np.any(np.abs(np.asarray(factor, np.float64)) ** n > np.finfo(np.float32).max):
        scaled = v  # scale² beyond float32 (targets spread 1.8e19 and more): one factor at a time, not inf
        for _ in range(n):
          scaled = scaled * factor
      else:
        scaled = v * factor**n
      out[k] = scaled.mean(axis=-1) if per_output else scaled
  return out


def fits_loss(num_classes: int | None, kind: str, loss_targets: str) -> str | None:
  """Why a dataset's targets do not fit a loss (a message), or `None` if they do."""
  if kind == 'real' and loss_targets != 'real':
    return "has real-valued targets; use a loss with 'real' targets (regression)"
  if kind == 'class' and loss_targets == 'real':
    return "has class labels; use a loss with 'class' targets or, for two classes, 'binary' ones"
  if loss_targets == 'binary' and num_classes != 2:
    return f"has {num_classes} classes; a loss with 'binary' targets needs 2"
  return None
