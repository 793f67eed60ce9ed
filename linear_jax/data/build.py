"""How arrays, your own or a file's, become checked records: features, labels, weights, a test split.

Arrays from any source (your own, or a parser in `readers.py`) are checked
here, on the host, so compiled code never meets a bad label: each problem
raises a `ValueError` naming the arrays (or file) and what is wrong.
"""

import dataclasses

import numpy as np

from linear_jax.data import chunks
from linear_jax.data.records import Raw
from linear_jax.maths import validation

# `Raw.extra` key: the header's names of a CSV's feature columns, which a test file's must equal.
FEATURE_NAMES = 'feature_names'


def _fail(where, what):
  raise ValueError(f'{where}: {what}')


def check_features(x: np.ndarray, where: str, values: bool = True) -> None:
  """Raises unless `x` is a non-empty `[N, D]` array of finite real numbers (bfloat16 too).

  The values are checked in blocks (no whole-matrix mask); with
  `values=False` a memory map's values are left to `prepare`.
  """
  if np.ndim(x) != 2:
    raise ValueError(f'{where}: features must be [N, D], got shape {np.shape(x)}.')
  if np.shape(x)[0] == 0:
    raise ValueError(f'{where}: empty batch (N = 0).')
  if not is_real_dtype(x.dtype):
    raise ValueError(f'{where}: features must be real numbers, got dtype {x.dtype}.')
  if values or not chunks.is_mapped(x):
    chunks.check_finite(x, where)


def is_real_dtype(dtype) -> bool:
  """Whether `dtype` holds real numbers: a float (bfloat16 too) or an integer; not bool, complex,
  timedelta64 (an integer to NumPy) or anything else."""
  dtype = np.dtype(dtype)
  return chunks.is_float(dtype) or dtype.kind in 'iu'


def check_raw(
  raw: Raw, where: str, values: bool = True, labels_where: str | None = None, training: bool = True
) -> Raw:
  """Validates loaded arrays: finite features, matching counts, valid labels.

  `values=False` leaves the finiteness of memory-mapped features to `prepare`,
  whose one read of the file checks every value anyway. `labels_where` names
  the labels in messages about them, when they come from another file.
  `training` labels must hold two classes at least (a held-out test set may
  hold one).
  """
  x, y = raw.x, raw.y
  check_features(x, where, values)
  if len(y) != len(x):
    _fail(where, f'{len(x)} feature rows but {len(y)} targets.')
  labels_where = labels_where or where
  if raw.kind == 'class' and training and len(y) and np.ndim(y) == 1 and np.min(y) == np.max(y):
    first = int(y[0])
    named = repr(raw.class_names[first]) if raw.class_names and 0 <= first < len(raw.class_names) else first
    _fail(
      labels_where,
      f'every label is {named}: one class, and a classifier learns nothing from it (its accuracy would '
      'be 1 by default); give examples of two classes at least.',
    )
  if raw.kind == 'class':
    validation.check_targets(y, 'class', max(raw.num_classes, 2), where=labels_where)
  else:
    validation.check_targets(y, 'real', 1 if y.ndim == 1 else y.shape[1], where=labels_where)
  return raw


def _targets_kind(y, path):
  if np.iscomplexobj(y) or y.dtype.kind not in 'biuf':  # timedelta64 is an integer to NumPy
    _fail(path, f'targets must be real numbers or text labels, got dtype {y.dtype}.')
  if np.issubdtype(y.dtype, np.integer):
    return 'class'
  if (
    np.issubdtype(y.dtype, np.floating)
    and y.ndim == 1
    and np.all(np.isfinite(y))
    and np.all(y == np.round(y))
  ):
    return 'class'
  if np.issubdtype(y.dtype, np.number) and y.dtype != bool:
    return 'real'
  if y.dtype == bool:
    return 'class'
  _fail(path, f'targets must be numbers or text labels, got dtype {y.dtype}.')
  return None


def text_labels(y: np.ndarray) -> tuple[np.ndarray, tuple[str, ...] | None]:
  """`(labels [N] int64, names)` for text labels (classes numbered in sorted order), else `(y, None)`.

  Byte strings (NumPy's `S` dtype, as `np.array([b'cat'])` makes) are text in UTF-8.
  """
  y = np.asarray(y)
  if y.dtype.kind == 'S':
    try:
      y = np.char.decode(y, 'utf-8')
    except UnicodeDecodeError:
      return y, None  # not text: refused as such by the caller
  if y.dtype.kind in 'USO' and y.ndim == 1 and len(y) and all(isinstance(v, str) for v in y.tolist()):
    names, numbered = np.unique(y, return_inverse=True)
    return numbered.astype(np.int64), tuple(str(v) for v in names.tolist())
  return y, None


def labels_by_name(y: np.ndarray, names: tuple[str, ...], where: str) -> np.ndarray:
  """Text labels `y` numbered as the training labels `names` number them; an unknown one is refused."""
  index = {v: i for i, v in enumerate(names)}
  values = [str(v) for v in np.asarray(y).tolist()]
  unknown = [v for v in values if v not in index]
  if unknown:
    _fail(where, f'label {unknown[0]!r} does not occur in the training labels.')
  return np.array([index[v] for v in values], np.int64)


def check_weights(w: np.ndarray, n: int, where: str) -> np.ndarray:
  """`w` as `[n]` float64 sample weights, or a `ValueError` naming `where` and what is wrong.

  The checks are `validation.check_weights`' (shape, finite, >= 0, not all 0),
  run on the host where the weights enter.
  """
  w = np.asarray(w)
  if not is_real_dtype(w.dtype):  # text, bool and complex would be converted without a word
    _fail(where, f'sample weights must be real numbers, got dtype {w.dtype}.')
  w = w.astype(np.float64)
  validation.check_weights(w, n, where=f'{where}: sample weights')
  return w


def _from_arrays(x, y, path, w=None, labels_path=None, real=False):
  labels_path = labels_path or path
  y, names = text_labels(y)
  kind = _targets_kind(y, labels_path)
  if real and names is None:  # whole numbers read as the real targets a regression loss wants
    kind = 'real'
  w = None if w is None else check_weights(w, len(y), path)
  if kind == 'class':
    given, y = y, y.astype(np.float64)
    if (y < 0).any():
      i = int(np.argmax(y < 0))
      _fail(labels_path, f'label {y[i]:g} at index {i} is negative.')
    if len(y) and y.max() >= 2**62:  # beyond the labels' integers (and any class count)
      i = int(np.argmax(y))
      _fail(labels_path, f'label {given[i]} at index {i} is too large to number a class; number them 0..C-1.')
    y = y.astype(np.int64)
    num_classes = len(names) if names is not None else int(y.max(initial=0)) + 1
    extra = {'x_kind': _feature_kind(x.dtype), 'text_labels': names is not None}
    return Raw(float_features(x), y, 'class', num_classes, class_names=names, w=w, extra=extra)
  return Raw(float_features(x), y.astype(np.float64), 'real', w=w, extra={'x_kind': _feature_kind(x.dtype)})


def check_class_count(raw: Raw, where: str) -> None:
  """Refuses training labels whose largest value would make far more classes than the labels hold.

  Classes are numbered `0..C-1` with `C` the largest label plus one, and the
  model has a row of weights for each: a stray label of 10^9 would ask for a
  billion classes, and exhaust memory after the run had started. Refused
  when `C` exceeds both twice the distinct labels and 1,000 more than them.
  (A test split's labels are held to the training labels instead, `with_test`.)
  """
  y = raw.y
  if raw.kind != 'class' or raw.class_names is not None or not len(y) or raw.num_classes <= 1000:
    return
  count = len(np.unique(y))
  if raw.num_classes <= max(2 * count, count + 1000):
    return
  i = int(np.argmax(y))
  _fail(
    where,
    f'label {y[i]} at index {i} would make {raw.num_classes:,} classes (numbered from 0), but only '
    f'{count:,} distinct labels occur; number the classes 0..C-1 '
    '(np.unique(y, return_inverse=True) does).',
  )


def float_features(x: np.ndarray) -> np.ndarray:
  """`x` in a float dtype without a copy when it has one: float16, bfloat16, float32 and
  float64 pass through; integers of up to 16 bits become float32 (exactly), wider
  ones float64. A memory map passes through whatever its dtype: `prepare` and
  streaming widen an integer file block by block, never a whole copy at once."""
  if chunks.is_float(x.dtype) or chunks.is_mapped(x):
    return x
  return x.astype(float_dtype(x.dtype))


def float_dtype(dtype: np.dtype) -> np.dtype:
  """The float dtype features of `dtype` are read as: itself for a float, float32 for integers of up
  to 16 bits (exact), float64 for wider ones. `prepare` keeps an integer map's splits in it."""
  dtype = np.dtype(dtype)
  if chunks.is_float(dtype):
    return dtype
  return np.dtype(np.float32 if dtype.itemsize <= 2 else np.float64)


def _feature_matrix(x, where):
  x = x if isinstance(x, np.ndarray) else np.asarray(x)  # a memory map stays one
  if x.ndim < 2:
    _fail(where, f'x must be [N, D] (or [N, ...] images), got shape {x.shape}.')
  if not (chunks.is_float(x.dtype) or np.issubdtype(x.dtype, np.number)) or x.dtype == bool:
    _fail(where, f'x must be numeric, got dtype {x.dtype}.')
  if not is_real_dtype(x.dtype):  # complex; timedelta64, which NumPy counts as an integer
    _fail(where, f'x must be real numbers, got dtype {x.dtype}.')
  if len(x) == 0:
    _fail(where, f'x has no rows: shape {x.shape}.')
  if 0 in x.shape[1:]:
    _fail(where, f'x has no features: shape {x.shape}.')
  return x.reshape(len(x), -1), (tuple(x.shape[1:]) if x.ndim > 2 else None)


def _feature_kind(dtype):
  return 'float' if chunks.is_float(dtype) else 'integer'


def _check_feature_names(raw, test, where, train_where):
  """Refuses a test file whose header names its features otherwise than the training file's does: the
  columns are matched by position, so `d,c,b,a` against `a,b,c,d` scored every row on the wrong
  weights. A file without a header names nothing, and is matched by position."""
  names, ours = test.extra.get(FEATURE_NAMES), raw.extra.get(FEATURE_NAMES)
  if names is None or ours is None or names == ours:
    return
  if sorted(names) == sorted(ours):
    _fail(
      where,
      f"its feature columns are {train_where}'s in another order ({', '.join(names)} against "
      f"{', '.join(ours)}); features are matched by position: save them in the training file's order.",
    )
  j = next(j for j, (a, b) in enumerate(zip(names, ours, strict=True)) if a != b)
  _fail(
    where,
    f'feature column {j + 1} is named {names[j]!r}, but {train_where} names it {ours[j]!r}: a test file '
    "holds the training file's features, under the same names.",
  )


def with_test(
  raw: Raw,
  test: Raw,
  where: str,
  train_where: str,
  labels_where: str | None = None,
  train_labels_where: str | None = None,
) -> Raw:
  """`raw` with `test` (a `Raw` from a held-out file or arrays) as its test split, checked against it.

  The test data must have the same number of features (and image shape),
  the same dtype kind of features (float or integer) and of targets (class
  labels, text labels or real targets), and only labels the training data
  has; each difference is a `ValueError` naming `where` (`labels_where` and
  `train_labels_where` for the targets, when they come from files of their
  own).
  """
  labels_where, train_labels_where = labels_where or where, train_labels_where or train_where
  if test.x.shape[1] != raw.x.shape[1] or test.image_shape != raw.image_shape:
    shape = lambda r: r.image_shape or (r.x.shape[1],)  # noqa: E731
    _fail(
      where,
      f'{" x ".join(map(str, shape(test)))} features, but {train_where} has '
      f'{" x ".join(map(str, shape(raw)))}.',
    )
  _check_feature_names(raw, test, where, train_where)
  kinds = raw.extra.get('x_kind'), test.extra.get('x_kind')
  if None not in kinds and kinds[0] != kinds[1]:
    _fail(where, f'features are {kinds[1]}s, but {train_where} holds {kinds[0]}s: save both alike.')
  text = lambda r: r.kind == 'class' and r.extra.get('text_labels', False)  # noqa: E731
  if test.kind != raw.kind or text(test) != text(raw):
    what = lambda r: 'text labels' if text(r) else ('class labels' if r.kind == 'class' else 'real targets')  # noqa: E731
    _fail(labels_where, f'holds {what(test)}, but {train_labels_where} holds {what(raw)}.')
  y = test.y
  if text(raw):
    y = labels_by_name(np.asarray(test.class_names)[test.y], raw.class_names, labels_where)
  elif raw.kind == 'class':
    unknown = np.setdiff1d(np.unique(y), np.unique(raw.y))
    if len(unknown):
      _fail(
        labels_where, f'label {unknown[0]} does not occur in the training labels of {train_labels_where}.'
      )
  elif (y.ndim, y.shape[1:]) != (raw.y.ndim, raw.y.shape[1:]):
    _fail(labels_where, f'targets of shape {y.shape}, but {train_labels_where} has {raw.y.shape}.')
  return dataclasses.replace(raw, test=(test.x, y), w_test=test.w)


def from_arrays(
  x: np.ndarray,
  y: np.ndarray,
  num_classes: int | None = None,
  test: tuple | None = None,
  class_names: tuple[str, ...] | list[str] | None = None,
  name: str = 'arrays',
  sample_weight: np.ndarray | None = None,
  real_targets: bool = False,
) -> Raw:
  """Your own NumPy arrays as a dataset, for `prepare` and then `train.fit`.

  Args:
    x: `[N, D]` features, or `[N, ...]` images (flattened; the shape is kept
      for the template pictures). A float dtype (float16, bfloat16, float32,
      float64) and a memory map are kept as they are.
    y: `[N]` integer labels (whole-number floats and bools count as labels),
      `[N]` text labels (classes numbered in sorted order and named after
      them), or `[N]` / `[N, K]` real targets for the regression losses.
    num_classes: for labels, the number of classes; `None`: the largest label
      plus one. A label outside `[0, num_classes)` is refused.
    test: an optional held-out `(x_test, y_test)` or `(x_test, y_test,
      w_test)`; `prepare` then uses it instead of splitting one off.
    class_names: optional names, one per class.
    name: how error messages name these arrays.
    sample_weight: optional `[N]` non-negative weights, not all 0.
    real_targets: numeric `y` are real targets even when all are whole
      numbers (counts, say, for a regression loss); else whole numbers are labels.

  Returns:
    A checked `Raw`. Raises a `ValueError` naming the first bad value.
  """
  x, image_shape = _feature_matrix(x, name)
  if class_names is not None and text_labels(y)[1] is not None:
    _fail(name, 'class_names cannot be given with text labels: the labels name the classes.')
  raw = _from_arrays(x, np.asarray(y), name, sample_weight, real=real_targets)
  raw = dataclasses.replace(raw, image_shape=image_shape)
  if num_classes is None:
    check_class_count(raw, name)
  else:
    if raw.kind != 'class':
      _fail(name, f'num_classes={num_classes} was given but the targets are real numbers.')
    if not validation.is_whole(num_classes, 2):
      _fail(name, f'num_classes must be a whole number >= 2 (two classes at least), got {num_classes!r}.')
    raw = dataclasses.replace(raw, num_classes=int(num_classes))
  if test is not None:
    where = f'{name} (test)'
    if not (isinstance(test, (tuple, list)) and len(test) in (2, 3)):
      size = f' of {len(test)}' if isinstance(test, (tuple, list)) else ''
      _fail(where, f'test must be (x, y) or (x, y, weights), got a {type(test).__name__}{size}.')
    x_test, test_shape = _feature_matrix(test[0], where)
    if x_test.shape[1] != x.shape[1] or test_shape != image_shape:
      _fail(where, f'x has shape {np.shape(test[0])}, but the training x has {np.shape(x)}.')
    y_test, w_test = np.asarray(test[1]), (test[2] if len(test) > 2 else None)
    if raw.kind == 'real' and y_test.shape[1:] != raw.y.shape[1:]:
      _fail(where, f'y has shape {list(y_test.shape)}, but the training targets have {list(raw.y.shape)}.')
    if raw.extra.get('text_labels'):
      y_test = labels_by_name(y_test, raw.class_names, where)
    elif raw.kind == 'class' and _targets_kind(y_test, where) == 'class':
      y_test = y_test.astype(np.int64)
    w_test = None if w_test is None else check_weights(w_test, len(y_test), where)
    raw = dataclasses.replace(raw, test=(float_features(x_test), y_test), w_test=w_test)
  if class_names is not None:
    if raw.kind != 'class' or len(class_names) != raw.num_classes:
      _fail(name, f'{len(class_names)} class names for {raw.num_classes} classes.')
    raw = dataclasses.replace(raw, class_names=tuple(str(c) for c in class_names))
  check_raw(raw, name)
  if raw.test is not None:
    check_raw(dataclasses.replace(raw, x=raw.test[0], y=raw.test[1]), f'{name} (test)', training=False)
  return raw


def raw_from_file(
  x: np.ndarray,
  y: np.ndarray,
  w: np.ndarray | None,
  where: str,
  labels_where: str | None = None,
  real: bool = False,
) -> Raw:
  """A file's arrays as a checked-kind `Raw`.

  Args:
    x: `[N, D]` features, or `[N, ...]` images (flattened, the shape kept).
    y: `[N]` labels (numbers or text) or `[N]` / `[N, K]` real targets.
    w: `[N]` sample weights, or `None`.
    where: how error messages name the file.
    labels_where: how they name the labels' file, when it is another.
    real: read numeric targets as real numbers even when all are whole
      (regression targets such as counts); else whole numbers are labels.
  """
  x, image_shape = _feature_matrix(x, where)
  if np.ndim(y) == 0:
    _fail(where, f'the labels (y) must be an array, one per row, got a single value of shape {np.shape(y)}.')
  return dataclasses.replace(_from_arrays(x, y, where, w, labels_where, real), image_shape=image_shape)
