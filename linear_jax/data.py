"""Datasets: built-in, synthetic and local files; validation, splits, preprocessing.

Every loader returns raw `(x [N, D] float, y [N])` arrays and `prepare` splits
them and fits preprocessing on the training split only. Data is validated here,
where it enters, so compiled code never meets a bad label: each problem raises
a `ValueError` naming the file (or dataset) and what is wrong.
"""

import csv
import dataclasses
import gzip
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np

from linear_jax import chunks
from linear_jax import npyfile
from linear_jax import validation

BUILTIN = ('digits', 'breast_cancer', 'diabetes')
SYNTHETIC = ('blobs', 'linreg', 'binary2d')
FILES = ('cifar10', 'mnist', 'npz', 'npy', 'csv')
DATASETS = BUILTIN + SYNTHETIC + FILES
PREPROCESSING = ('standardize', 'center', 'none')


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
  weighs 1 or the split is empty.
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

  @property
  def num_features(self):
    return self.x_train.shape[1]


def _fail(where, what):
  raise ValueError(f'{where}: {what}')


def check_features(x, where, values=True):
  """Raises unless `x` is a non-empty `[N, D]` array of finite real numbers (bfloat16 too).

  The values are checked in blocks (no whole-matrix mask); with
  `values=False` a memory map's values are left to `prepare`.
  """
  if np.ndim(x) != 2:
    raise ValueError(f'{where}: features must be [N, D], got shape {np.shape(x)}.')
  if np.shape(x)[0] == 0:
    raise ValueError(f'{where}: empty batch (N = 0).')
  if not (chunks.is_float(x.dtype) or np.issubdtype(x.dtype, np.integer)):
    raise ValueError(f'{where}: features must be real numbers, got dtype {x.dtype}.')
  if values or not chunks.is_mapped(x):
    chunks.check_finite(x, where)


def check_raw(raw, where, values=True):
  """Validates loaded arrays: finite features, matching counts, valid labels.

  `values=False` leaves the finiteness of memory-mapped features to `prepare`,
  whose one read of the file checks every value anyway.
  """
  x, y = raw.x, raw.y
  check_features(x, where, values)
  if len(y) != len(x):
    _fail(where, f'{len(x)} feature rows but {len(y)} targets.')
  if raw.kind == 'class':
    validation.check_targets(y, 'class', max(raw.num_classes, 2), where=where)
  else:
    validation.check_targets(y, 'real', 1 if y.ndim == 1 else y.shape[1], where=where)
  return raw


# ---------------------------------------------------------------- built-in


def load_builtin(name):
  """The real datasets bundled with scikit-learn: no download."""
  from sklearn import datasets  # pylint: disable=import-outside-toplevel

  if name == 'digits':
    d = datasets.load_digits()
    return Raw(
      d.data.astype(np.float64),
      d.target.astype(np.int64),
      'class',
      10,
      (8, 8),
      tuple(str(i) for i in range(10)),
    )
  if name == 'breast_cancer':
    d = datasets.load_breast_cancer()
    return Raw(
      d.data.astype(np.float64), d.target.astype(np.int64), 'class', 2, class_names=tuple(d.target_names)
    )
  if name == 'diabetes':
    d = datasets.load_diabetes()
    return Raw(d.data.astype(np.float64), d.target.astype(np.float64), 'real')
  raise ValueError(f'Unknown built-in dataset {name!r}; valid: {", ".join(BUILTIN)}.')


# ---------------------------------------------------------------- synthetic


def blobs(num_examples=600, num_features=2, num_classes=3, spread=1.0, seed=0):
  """Gaussian blobs: class `c` is `N(μ_c, spread² I)` with random centres."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(scale=4.0, size=(num_classes, num_features))
  y = rng.integers(0, num_classes, num_examples)
  x = centres[y] + spread * rng.normal(size=(num_examples, num_features))
  return Raw(x, y.astype(np.int64), 'class', num_classes)


def linreg(num_examples=500, num_features=5, num_outputs=1, noise=0.1, seed=0):
  """`y = x W*ᵀ + b* + noise` with a known `W*` (in `extra`)."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(num_outputs, num_features))
  b = rng.normal(size=(num_outputs,))
  x = rng.normal(size=(num_examples, num_features))
  y = x @ w.T + b + noise * rng.normal(size=(num_examples, num_outputs))
  return Raw(x, y[:, 0] if num_outputs == 1 else y, 'real', extra={'W': w, 'b': b})


def binary2d(num_examples=400, separation=3.0, seed=0):
  """Two Gaussian clouds in 2-D, labels {0, 1}: the geometric viewpoint."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 2, num_examples)
  direction = np.array([1.0, 0.6]) / np.linalg.norm([1.0, 0.6])
  x = rng.normal(size=(num_examples, 2)) + np.outer(2 * y - 1, direction) * separation / 2
  return Raw(x, y.astype(np.int64), 'class', 2, class_names=('0', '1'))


# ---------------------------------------------------------------- files


def _read(path):
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise ValueError(f'{path}: cannot read ({e.strerror}).') from e
  if path.endswith('.gz'):
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
      raise ValueError(f'{path}: not a valid gzip file ({e}).') from e
  return data


CIFAR_RECORD = 1 + 3072
CIFAR_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')


def read_cifar_bin(path):
  """One CIFAR-10 binary batch: records of 1 label byte + 3,072 pixel bytes."""
  data = _read(path)
  if not data or len(data) % CIFAR_RECORD:
    _fail(
      path, f'size {len(data)} bytes is not a positive multiple of the {CIFAR_RECORD}-byte CIFAR-10 record.'
    )
  records = np.frombuffer(data, np.uint8).reshape(-1, CIFAR_RECORD)
  labels = records[:, 0].astype(np.int64)
  if labels.max() > 9:
    i = int(np.argmax(labels > 9))
    _fail(path, f'record {i} has label byte {labels[i]}, above 9.')
  return records[:, 1:].astype(np.float32), labels


class _CifarUnpickler(pickle.Unpickler):
  """Admits only what a CIFAR-10 Python batch holds: NumPy arrays and builtins."""

  ALLOWED = {
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
  }

  def __init__(self, f, path):
    super().__init__(f, encoding='bytes')
    self.path = path

  def find_class(self, module, name):
    if (module, name) not in self.ALLOWED:
      raise ValueError(
        f'{self.path}: refused to unpickle {module}.{name}; a CIFAR-10 Python '
        'batch holds only NumPy arrays, lists, bytes and numbers.'
      )
    module = module.replace('numpy.core.', 'numpy._core.')
    return super().find_class(module, name)


def read_cifar_py(path):
  """One CIFAR-10 Python batch (a pickled dict), through a restricted unpickler."""
  import io  # pylint: disable=import-outside-toplevel

  data = _read(path)
  try:
    batch = _CifarUnpickler(io.BytesIO(data), path).load()
  except ValueError:
    raise
  except Exception as e:  # a corrupt pickle can raise almost anything
    raise ValueError(f'{path}: not a valid CIFAR-10 Python batch ({type(e).__name__}: {e}).') from e
  if not isinstance(batch, dict) or b'data' not in batch or b'labels' not in batch:
    _fail(path, "expected a dict with keys b'data' and b'labels'.")
  x, labels = batch[b'data'], batch[b'labels']
  if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != 3072:
    _fail(path, f"b'data' must be an [N, 3072] array, got {getattr(x, 'shape', type(x).__name__)}.")
  try:
    y = np.asarray(labels, np.int64)
  except (TypeError, ValueError, OverflowError) as e:
    raise ValueError(f"{path}: b'labels' are not integers.") from e
  if y.shape != (len(x),):
    _fail(path, f'{len(x)} images but {y.size} labels.')
  out = (y < 0) | (y > 9)
  if out.any():
    i = int(np.argmax(out))
    _fail(path, f'label {y[i]} at index {i} is outside [0, 9].')
  return x.astype(np.float32), y


def _find_dir(data_dir, names, what):
  """`data_dir` itself if it holds one of `names`, else its one subfolder that does."""
  if not data_dir:
    raise ValueError(f'{what} needs --data_dir: the unpacked folder, or the folder above it.')
  candidates = (
    [data_dir]
    + [
      os.path.join(data_dir, d)
      for d in sorted(os.listdir(data_dir))
      if os.path.isdir(os.path.join(data_dir, d))
    ]
    if os.path.isdir(data_dir)
    else []
  )
  for d in candidates:
    if any(os.path.exists(os.path.join(d, n)) for n in names):
      return d
  raise ValueError(
    f'{data_dir}: no {what} files found here or one folder below (looked for {", ".join(names)}).'
  )


def load_cifar10(data_dir):
  """CIFAR-10 from `cifar-10-batches-bin` or `cifar-10-batches-py` (or the folder above)."""
  names = ['data_batch_1.bin', 'data_batch_1']
  d = _find_dir(data_dir, names, 'CIFAR-10')
  binary = os.path.exists(os.path.join(d, 'data_batch_1.bin'))
  reader, suffix = (read_cifar_bin, '.bin') if binary else (read_cifar_py, '')
  train = [
    reader(os.path.join(d, f'data_batch_{i}{suffix}'))
    for i in range(1, 6)
    if os.path.exists(os.path.join(d, f'data_batch_{i}{suffix}'))
  ]
  test_path = os.path.join(d, f'test_batch{suffix}')
  test = reader(test_path) if os.path.exists(test_path) else None
  x = np.concatenate([t[0] for t in train])
  y = np.concatenate([t[1] for t in train])
  return Raw(x, y, 'class', 10, (3, 32, 32), CIFAR_CLASSES, test=test)


IDX_IMAGES, IDX_LABELS = 2051, 2049


def read_idx(path, expect_magic):
  """An MNIST IDX file (raw or `.gz`): images `[N, H·W]` or labels `[N]`."""
  data = _read(path)
  if len(data) < 8:
    _fail(path, f'{len(data)} bytes is too short for an IDX header.')
  magic, n = struct.unpack('>II', data[:8])
  if magic != expect_magic:
    _fail(
      path,
      f'IDX magic number {magic}, expected {expect_magic} '
      f'({"images" if expect_magic == IDX_IMAGES else "labels"}).',
    )
  if magic == IDX_IMAGES:
    if len(data) < 16:
      _fail(path, 'truncated IDX image header.')
    rows, cols = struct.unpack('>II', data[8:16])
    expected = 16 + n * rows * cols
    if len(data) != expected:
      _fail(
        path,
        f'header says {n} images of {rows}x{cols} ({expected} bytes) but the file has {len(data)} bytes.',
      )
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows * cols).astype(np.float32), (rows, cols)
  if len(data) != 8 + n:
    _fail(path, f'header says {n} labels but the file has {len(data) - 8}.')
  return np.frombuffer(data, np.uint8, offset=8).astype(np.int64), None


def _idx_path(d, stem):
  for name in (stem, stem + '.gz'):
    if os.path.exists(os.path.join(d, name)):
      return os.path.join(d, name)
  return None


def load_mnist(data_dir):
  """MNIST or Fashion-MNIST IDX files (raw or gzipped) from `data_dir` or a folder in it."""
  stems = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
  }
  d = _find_dir(data_dir, [stems['train'][0], stems['train'][0] + '.gz'], 'MNIST IDX')
  splits = {}
  for split, (img, lab) in stems.items():
    ip, lp = _idx_path(d, img), _idx_path(d, lab)
    if ip is None or lp is None:
      if split == 'train':
        _fail(d, f'missing {img} or {lab} (raw or .gz).')
      continue
    x, shape = read_idx(ip, IDX_IMAGES)
    y, _ = read_idx(lp, IDX_LABELS)
    if len(x) != len(y):
      _fail(lp, f'{len(y)} labels for {len(x)} images in {ip}.')
    if y.max(initial=0) > 9:
      i = int(np.argmax(y > 9))
      _fail(lp, f'label {y[i]} at index {i} is outside [0, 9].')
    splits[split] = (x, y, shape)
  x, y, shape = splits['train']
  test = splits['test'][:2] if 'test' in splits else None
  return Raw(x, y, 'class', 10, shape, test=test)


def _targets_kind(y, path):
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


def text_labels(y):
  """`(labels [N] int64, names)` for text labels (classes numbered in sorted order), else `(y, None)`."""
  y = np.asarray(y)
  if y.dtype.kind in 'USO' and y.ndim == 1 and len(y) and all(isinstance(v, str) for v in y.tolist()):
    names, numbered = np.unique(y, return_inverse=True)
    return numbered.astype(np.int64), tuple(str(v) for v in names.tolist())
  return y, None


def labels_by_name(y, names, where):
  """Text labels `y` numbered as the training labels `names` number them; an unknown one is refused."""
  index = {v: i for i, v in enumerate(names)}
  values = [str(v) for v in np.asarray(y).tolist()]
  unknown = [v for v in values if v not in index]
  if unknown:
    _fail(where, f'label {unknown[0]!r} does not occur in the training labels.')
  return np.array([index[v] for v in values], np.int64)


def check_weights(w, n, where):
  """`w` as `[n]` float64 sample weights, or a `ValueError` naming `where` and what is wrong.

  The checks are `validation.check_weights`' (shape, finite, >= 0, not all 0),
  run on the host where the weights enter.
  """
  try:
    w = np.asarray(w, np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where}: sample weights must be numbers ({e}).') from e
  validation.check_weights(w, n, where=f'{where}: sample weights')
  return w


def _from_arrays(x, y, path, w=None):
  y, names = text_labels(y)
  kind = _targets_kind(y, path)
  w = None if w is None else check_weights(w, len(y), path)
  if kind == 'class':
    y = y.astype(np.float64)
    if (y < 0).any():
      i = int(np.argmax(y < 0))
      _fail(path, f'label {y[i]:g} at index {i} is negative.')
    y = y.astype(np.int64)
    num_classes = len(names) if names is not None else int(y.max(initial=0)) + 1
    extra = {'x_kind': _feature_kind(x.dtype), 'text_labels': names is not None}
    return Raw(float_features(x), y, 'class', num_classes, class_names=names, w=w, extra=extra)
  return Raw(float_features(x), y.astype(np.float64), 'real', w=w, extra={'x_kind': _feature_kind(x.dtype)})


def float_features(x):
  """`x` in a float dtype without a copy when it has one: float16, bfloat16, float32 and
  float64 (and memory maps) pass through; integers of up to 16 bits become float32
  (exactly), wider ones float64."""
  if chunks.is_float(x.dtype):
    return x
  return x.astype(np.float32 if x.dtype.itemsize <= 2 else np.float64)


def _feature_matrix(x, where):
  x = x if isinstance(x, np.ndarray) else np.asarray(x)  # a memory map stays one
  if x.ndim < 2:
    _fail(where, f'x must be [N, D] (or [N, ...] images), got shape {x.shape}.')
  if not (chunks.is_float(x.dtype) or np.issubdtype(x.dtype, np.number)) or x.dtype == bool:
    _fail(where, f'x must be numeric, got dtype {x.dtype}.')
  if np.iscomplexobj(x):
    _fail(where, f'x must be real numbers, got dtype {x.dtype}.')
  return x.reshape(len(x), -1), (tuple(x.shape[1:]) if x.ndim > 2 else None)


def _feature_kind(dtype):
  return 'float' if chunks.is_float(dtype) else 'integer'


def with_test(raw, test, where, train_where):
  """`raw` with `test` (a `Raw` from a held-out file or arrays) as its test split, checked against it.

  The test data must have the same number of features (and image shape),
  the same dtype kind of features (float or integer) and of targets (class
  labels, text labels or real targets), and only labels the training data
  has; each difference is a `ValueError` naming `where`.
  """
  if test.x.shape[1] != raw.x.shape[1] or test.image_shape != raw.image_shape:
    shape = lambda r: r.image_shape or (r.x.shape[1],)  # noqa: E731
    _fail(
      where,
      f'{" x ".join(map(str, shape(test)))} features, but {train_where} has '
      f'{" x ".join(map(str, shape(raw)))}.',
    )
  kinds = raw.extra.get('x_kind'), test.extra.get('x_kind')
  if None not in kinds and kinds[0] != kinds[1]:
    _fail(where, f'features are {kinds[1]}s, but {train_where} holds {kinds[0]}s: save both alike.')
  text = lambda r: r.kind == 'class' and r.extra.get('text_labels', False)  # noqa: E731
  if test.kind != raw.kind or text(test) != text(raw):
    what = lambda r: 'text labels' if text(r) else ('class labels' if r.kind == 'class' else 'real targets')  # noqa: E731
    _fail(where, f'targets are {what(test)}, but {train_where} has {what(raw)}.')
  y = test.y
  if text(raw):
    y = labels_by_name(np.asarray(test.class_names)[test.y], raw.class_names, where)
  elif raw.kind == 'class':
    unknown = np.setdiff1d(np.unique(y), np.unique(raw.y))
    if len(unknown):
      _fail(where, f'label {unknown[0]} does not occur in the training labels of {train_where}.')
  elif (y.ndim, y.shape[1:]) != (raw.y.ndim, raw.y.shape[1:]):
    _fail(where, f'targets of shape {y.shape}, but {train_where} has {raw.y.shape}.')
  return dataclasses.replace(raw, test=(test.x, y), w_test=test.w)


def from_arrays(x, y, num_classes=None, test=None, class_names=None, name='arrays', sample_weight=None):
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

  Returns:
    A checked `Raw`. Raises a `ValueError` naming the first bad value.
  """
  x, image_shape = _feature_matrix(x, name)
  if class_names is not None and text_labels(y)[1] is not None:
    _fail(name, 'class_names cannot be given with text labels: the labels name the classes.')
  raw = dataclasses.replace(_from_arrays(x, np.asarray(y), name, sample_weight), image_shape=image_shape)
  if num_classes is not None:
    if raw.kind != 'class':
      _fail(name, f'num_classes={num_classes} was given but the targets are real numbers.')
    if not (isinstance(num_classes, (int, np.integer)) and num_classes >= 1):
      _fail(name, f'num_classes must be a whole number >= 1, got {num_classes!r}.')
    raw = dataclasses.replace(raw, num_classes=int(num_classes))
  if test is not None:
    where = f'{name} (test)'
    x_test, test_shape = _feature_matrix(test[0], where)
    if x_test.shape[1] != x.shape[1] or test_shape != image_shape:
      _fail(where, f'x has shape {np.shape(test[0])}, but the training x has {np.shape(x)}.')
    y_test, w_test = np.asarray(test[1]), (test[2] if len(test) > 2 else None)
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
    check_raw(dataclasses.replace(raw, x=raw.test[0], y=raw.test[1]), f'{name} (test)')
  return raw


def _npz_arrays(path, names):
  """The arrays `names` of an npz (x-like ones mapped when stored uncompressed); `None` for absent ones."""
  try:
    is_zip = zipfile.is_zipfile(path)
  except OSError as e:
    raise ValueError(f'{path}: cannot read ({e.strerror}).') from e
  if not is_zip:
    _fail(path, 'not a valid .npz file (not a zip archive).')
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = {'x', 'y'} - set(f.files)
      if missing:
        _fail(path, f'missing array(s) {", ".join(sorted(missing))}; found {", ".join(f.files) or "none"}.')
      compressed = sum(
        f.zip.getinfo(n + '.npy').file_size
        for n in names
        if n.startswith('x')
        and n in f.files
        and f.zip.getinfo(n + '.npy').compress_type != zipfile.ZIP_STORED
      )
      if compressed:  # decompressed into memory, then prepared into splits of about the same size
        check_memory(
          2 * compressed + 4 * chunks.CHUNK_BYTES,
          path,
          advice='a compressed npz must be decompressed whole: save it with np.savez (uncompressed) or as '
          '.npy, then train with --stream, which reads the file in blocks.',
        )
      return {
        n: (npyfile.npz_member(path, f, n) if n.startswith('x') else f[n]) if n in f.files else None
        for n in names
      }
  except ValueError as e:
    if str(e).startswith(path):
      raise
    raise ValueError(f'{path}: cannot read as .npz without pickle ({e}).') from e
  except Exception as e:  # noqa: BLE001 - a corrupt archive can raise almost anything (zlib, zipfile, ...)
    raise ValueError(f'{path}: not a valid .npz file ({type(e).__name__}: {e}).') from e


def load_npz(path):
  """A `.npz` with arrays `x` `[N, D]` (or `[N, ...]`, flattened) and `y`; never unpickles.

  Optional arrays: `w` (`[N]` sample weights), and a held-out test split
  `x_test`, `y_test` (and `w_test`). Arrays stored uncompressed (`np.savez`)
  are memory-mapped, so `x` is read once, in blocks, by `prepare`;
  compressed ones are read into memory.
  """
  a = _npz_arrays(path, ('x', 'y', 'w', 'x_test', 'y_test', 'w_test'))
  if (a['x_test'] is None) != (a['y_test'] is None):
    _fail(path, 'has one of x_test and y_test but not the other; a test split needs both.')
  raw = _raw_from_file(a['x'], a['y'], a['w'], path)
  if a['x_test'] is not None:
    test = _raw_from_file(a['x_test'], a['y_test'], a['w_test'], f'{path} (x_test)')
    raw = with_test(raw, test, f'{path} (x_test)', f'{path} (x)')
  return raw


def _raw_from_file(x, y, w, where):
  x, image_shape = _feature_matrix(x, where)
  return dataclasses.replace(_from_arrays(x, y, where, w), image_shape=image_shape)


def load_npy(path, labels_path):
  """Features from a `.npy` (memory-mapped, read-only, never unpickled) and labels from another.

  `path` holds `[N, D]` (or `[N, ...]`, flattened) float16 / bfloat16 /
  float32 / float64 (or integer) features; `labels_path` holds `[N]` labels
  (integers or text) or real targets.
  """
  if not labels_path:
    _fail(
      path,
      '--dataset=npy needs --labels_path=LABELS.npy beside --data_path (and --test_labels_path '
      'beside --test_path).',
    )
  x = npyfile.open_npy(path)
  try:
    y = np.load(labels_path, allow_pickle=False)
  except OSError as e:
    raise ValueError(f'{labels_path}: cannot read ({e.strerror or e}).') from e
  except ValueError as e:
    raise ValueError(f'{labels_path}: cannot read as .npy without pickle ({e}).') from e
  except Exception as e:  # noqa: BLE001 - a corrupt file can raise almost anything
    raise ValueError(f'{labels_path}: not a valid .npy file ({type(e).__name__}: {e}).') from e
  if not isinstance(y, np.ndarray) or y.ndim == 0:
    _fail(labels_path, 'not an array of labels.')
  if len(y) != len(x):
    _fail(labels_path, f'{len(y)} labels but {path} has {len(x)} rows.')
  return _raw_from_file(x, y, None, path)


DELIMITERS = (',', ';', '\t')


def detect_delimiter(lines):
  """The csv delimiter of `lines` (the file's first few): tab, `;` or `,`.

  The first of tab, `;` and `,` that occurs the same number of times (at
  least once) on every line; `,` if none does. `;` comes before `,`, so a
  file with decimal commas and `;` between fields is read right.
  """
  lines = [line for line in lines if line.strip()]
  for d in ('\t', ';', ','):
    counts = {line.count(d) for line in lines}
    if len(counts) == 1 and counts.pop() > 0:
      return d
  return ','


def _column(spec, header, width, path, what):
  if isinstance(spec, str) and not spec.lstrip('-').isdigit():
    if header is None or spec not in header:
      _fail(path, f'no column named {spec!r}; columns: {", ".join(header or []) or "(no header)"}.')
    return header.index(spec)
  col = int(spec)
  if not -width <= col < width:
    _fail(path, f'{what} column {col} is out of range for {width} columns.')
  return col % width


def load_csv(path, target_column=-1, delimiter=None, weight_column=None):
  """A `.csv`, one example a row: numeric features, a target column of numbers or text labels.

  Args:
    path: the file.
    target_column: the target column, by header name or index.
    delimiter: `','`, `';'` or tab; `None` detects it (`detect_delimiter`).
    weight_column: an optional column of sample weights (name or index),
      removed from the features.
  """
  if delimiter is not None and delimiter not in DELIMITERS:
    _fail(path, f'delimiter {delimiter!r} is not one of ",", ";", tab.')
  try:
    with open(path, newline='') as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f'{path}: cannot read as CSV ({e}).') from e
  delimiter = delimiter or detect_delimiter(text.splitlines()[:5])
  try:
    rows = [r for r in csv.reader(text.splitlines(), delimiter=delimiter) if r and any(c.strip() for c in r)]
  except csv.Error as e:
    raise ValueError(f'{path}: cannot read as CSV ({e}).') from e
  if not rows:
    _fail(path, 'no rows.')
  header = None
  if len(rows) == 1:
    if not all(_is_float(c) for c in rows[0]):
      header, rows = rows[0], []
  elif any(not _is_float(a) and _is_float(b) for a, b in zip(rows[0], rows[1], strict=False)):
    header, rows = rows[0], rows[1:]  # a text cell above a number: the first row names the columns
  if not rows:
    _fail(path, 'a header but no data rows.')
  width = len(header or rows[0])
  col = _column(target_column, header, width, path, 'target')
  wcol = None if weight_column in (None, '') else _column(weight_column, header, width, path, 'weight')
  if wcol == col:
    _fail(path, 'the weight column cannot also be the target column.')
  first_line = 2 if header else 1
  for i, r in enumerate(rows):
    if len(r) != width:
      _fail(path, f'line {i + first_line} has {len(r)} fields, expected {width}.')
  targets = [r[col].strip() for r in rows]
  text_targets = not any(_is_float(t) for t in targets)  # all text: labels; a mix: a bad number
  numbers = [j for j in range(width) if j != col or not text_targets]
  values = np.empty((len(rows), len(numbers)))
  for i, r in enumerate(rows):
    try:
      values[i] = [float(r[j]) for j in numbers]
    except ValueError:
      bad = next(j for j in numbers if not _is_float(r[j]))
      _fail(path, f'line {i + first_line}, column {bad + 1}: {r[bad]!r} is not a number.')
  where = {j: k for k, j in enumerate(numbers)}
  y = np.array(targets) if text_targets else values[:, where[col]]
  w = None if wcol is None else values[:, where[wcol]]
  x = np.delete(values, [where[j] for j in (col, wcol) if j is not None and j in where], axis=1)
  if x.shape[1] == 0:
    _fail(path, 'no feature columns besides the target.')
  return _from_arrays(x, y, path, w)


def _is_float(s):
  try:
    float(s)
    return True
  except ValueError:
    return False


# ---------------------------------------------------------------- features

REPRESENTATIONS = ('pixels', 'histogram')


def _histograms(x, image_shape, bins, lo, hi):
  channels = image_shape[0] if len(image_shape) == 3 else 1
  n = len(x)
  per_channel = x.reshape(n, channels, -1)
  idx = np.clip(((per_channel - lo) / max(hi - lo, 1e-12) * bins).astype(np.int64), 0, bins - 1)
  counts = np.zeros((n, channels, bins))
  rows = np.arange(n)[:, None, None]
  chans = np.arange(channels)[None, :, None]
  np.add.at(counts, (np.broadcast_to(rows, idx.shape), np.broadcast_to(chans, idx.shape), idx), 1.0)
  return (counts / per_channel.shape[2]).reshape(n, channels * bins)


def histogram_features(raw, bins=16):
  """The lecture's "Features: Histogram": each image as the histogram of its pixel values.

  Grayscale images give `bins` features (the fraction of pixels in each
  intensity bin); colour images `[C, H, W]` give a histogram per channel,
  `C · bins` features. The value range is the format's (the data's min and max).
  """
  if raw.image_shape is None:
    raise ValueError('histogram features need image data (digits, mnist, cifar10 or an npz of images).')
  if not (isinstance(bins, int) and bins >= 1):
    raise ValueError(f'bins must be a whole number >= 1, got {bins!r}.')
  arrays = [raw.x] + ([raw.test[0]] if raw.test is not None else [])
  lo, hi = min(float(a.min()) for a in arrays), max(float(a.max()) for a in arrays)
  test = None if raw.test is None else (_histograms(raw.test[0], raw.image_shape, bins, lo, hi), raw.test[1])
  return dataclasses.replace(
    raw, x=_histograms(raw.x, raw.image_shape, bins, lo, hi), image_shape=None, test=test
  )


# ---------------------------------------------------------------- entry


def load(
  name,
  data_dir=None,
  data_path=None,
  target_column=-1,
  labels_path=None,
  num_examples=600,
  num_features=2,
  num_classes=3,
  seed=0,
  check_values=True,
  test_path=None,
  test_labels_path=None,
  delimiter=None,
  weight_column=None,
):
  """Loads any dataset by name; file datasets read `data_dir` or `data_path`.

  `.npy` features, and `x` stored uncompressed in an `.npz`, come back as
  read-only memory maps in the file's dtype. `check_values=False` leaves
  their finiteness check to `prepare`'s one read (the experiments do so);
  with `True` it costs a read of the file here.

  `test_path` (npz, npy with `test_labels_path`, csv) is a held-out test
  file in the format of `data_path`, checked against it (`with_test`);
  `prepare` then takes no test split from `data_path`. `delimiter` and
  `weight_column` are the csv's (see `load_csv`).
  """
  validation.check_name('dataset', name, DATASETS)
  data_dir = os.path.expanduser(data_dir) if data_dir else data_dir  # '--data_dir=~/x' reaches us unexpanded
  expand = lambda p: os.path.expanduser(p) if p else p  # noqa: E731
  data_path, labels_path, test_path, test_labels_path = map(
    expand, (data_path, labels_path, test_path, test_labels_path)
  )
  if test_path and name not in ('npz', 'npy', 'csv'):
    raise ValueError(f'--test_path needs a file dataset (npz, npy, csv), not --dataset={name}.')
  if weight_column not in (None, '') and name != 'csv':
    raise ValueError('--weight_column is for --dataset=csv; an npz holds its weights as an array w.')
  if name in BUILTIN:
    raw, where = load_builtin(name), name
  elif name == 'blobs':
    raw, where = blobs(num_examples, num_features, num_classes, seed=seed), name
  elif name == 'linreg':
    raw, where = linreg(num_examples, num_features, seed=seed), name
  elif name == 'binary2d':
    raw, where = binary2d(num_examples, seed=seed), name
  elif name == 'cifar10':
    raw, where = load_cifar10(data_dir), data_dir
  elif name == 'mnist':
    raw, where = load_mnist(data_dir), data_dir
  else:
    if not data_path:
      raise ValueError(f'--dataset={name} needs --data_path=FILE.')
    raw, where = _load_file(name, data_path, labels_path, target_column, delimiter, weight_column), data_path
    if test_path:
      if raw.test is not None:
        raise ValueError(
          f'{data_path}: holds x_test and y_test already; --test_path={test_path} would be a second.'
        )
      test = _load_file(name, test_path, test_labels_path, target_column, delimiter, weight_column)
      if test.test is not None:
        raise ValueError(f'{test_path}: a test file cannot hold a test split (x_test) of its own.')
      raw = with_test(raw, test, test_path, data_path)
  check_raw(raw, where, check_values)
  if raw.test is not None:
    check_raw(
      dataclasses.replace(raw, x=raw.test[0], y=raw.test[1]),
      test_path or f'{where} (test split)',
      check_values,
    )
  return raw


def _load_file(name, path, labels_path, target_column, delimiter, weight_column):
  if name == 'npz':
    return load_npz(path)
  if name == 'npy':
    return load_npy(path, labels_path)
  return load_csv(path, target_column, delimiter or None, weight_column)


def split_indices(n, val_fraction=0.1, test_fraction=0.2, seed=0, has_test=False, name='data'):
  """Rows of each split, `{'train', 'val', 'test'}` -> int64 indices, shuffled by `seed`.

  With `has_test` (the format or a file gives the test split) no test rows
  are taken from the `n` rows. The same seed gives the same split.
  """
  for what, f in (('val_fraction', val_fraction), ('test_fraction', test_fraction)):
    if not 0 <= f < 1:
      raise ValueError(f'{what} must be in [0, 1), got {f}.')
  order = np.random.default_rng(seed).permutation(n)
  n_test = 0 if has_test else int(round(test_fraction * n))
  n_val = int(round(val_fraction * n))
  if n - n_test - n_val < 1:
    raise ValueError(
      f'{name}: {n} examples leave no training split with '
      f'val_fraction={val_fraction}, test_fraction={test_fraction}.'
    )
  return {'test': order[:n_test], 'val': order[n_test : n_test + n_val], 'train': order[n_test + n_val :]}


def host_dtype(source_dtype, dtype=np.float32):
  """The dtype the prepared splits keep on the host: the file's, if it is a narrower float.

  float16 and bfloat16 features stay 2 bytes wide (training widens them on
  the device); float32 stays float32; anything wider, and integers, become
  `dtype` (the training dtype).
  """
  source_dtype, dtype = np.dtype(source_dtype), np.dtype(dtype)
  if chunks.is_float(source_dtype) and source_dtype.itemsize < dtype.itemsize:
    return source_dtype
  return dtype


def memory_needed(num_rows, num_features, dtype=np.float32):
  """Bytes of host memory `prepare` needs for `num_rows` x `num_features` rows kept in `dtype`.

  The prepared splits (one copy of the rows, in `host_dtype`), plus a few
  blocks of working space. A memory-mapped source costs nothing more (its
  pages are released as they are read); one already in memory is not counted
  again.
  """
  return int(num_rows) * int(num_features) * np.dtype(dtype).itemsize + 4 * chunks.CHUNK_BYTES


def memory_available():
  """Bytes the kernel says can be allocated without swapping (`MemAvailable`), or `None`."""
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  except (ValueError, OSError, AttributeError):
    return None


STREAM_ADVICE = 'train with --stream, which reads the file in blocks instead of holding it.'


def check_memory(need, name, available=None, advice=STREAM_ADVICE):
  """Raises, with the figures and the `--stream` advice, if `need` bytes cannot fit in memory."""
  available = memory_available() if available is None else available
  if available is not None and need > available:
    raise ValueError(
      f'{name}: the prepared data needs {_size(need)} of memory but only {_size(available)} is available; '
      + advice
    )


def _size(num_bytes):
  return f'{num_bytes / 1e9:.2f} GB' if num_bytes >= 1e9 else f'{num_bytes / 1e6:.1f} MB'


# Loads of at least this many bytes report progress (rows done, MB/s) through `prepare`'s `progress`.
PROGRESS_BYTES = 256 * 2**20


class _Progress:
  """Tells `report` (a `str -> None` callable) how a long pass goes, at most every `every` seconds."""

  def __init__(self, report, total_rows, row_bytes, every=2.0):
    import time  # pylint: disable=import-outside-toplevel

    self.clock = time.perf_counter
    self.report, self.total, self.row_bytes, self.every = report, total_rows, row_bytes, every
    self.start = self.last = self.clock()

  def __call__(self, what, done, final=False):
    if self.report is None:
      return
    now = self.clock()
    if final or now - self.last >= self.every:
      self.last = now
      rate = done * self.row_bytes / max(now - self.start, 1e-9) / 1e6
      self.report(
        f'{what}: {done:,} / {self.total:,} rows ({100 * done / max(self.total, 1):.0f}%), {rate:,.0f} MB/s'
      )


def prepare(
  raw,
  name='data',
  val_fraction=0.1,
  test_fraction=0.2,
  preprocess='standardize',
  seed=0,
  dtype=np.float32,
  progress=None,
  class_weight=None,
):
  """Splits (train / validation / test, shuffled by `seed`) and preprocesses.

  The official test split is used when the format has one. `'standardize'`
  maps each feature to zero mean and unit variance, `'center'` subtracts the
  mean (the mean image, for images); both are fitted on the training split
  only, in float64, block by block. The splits are kept in
  `host_dtype(raw.x.dtype, dtype)`: the file's float16 / bfloat16 / float32
  stays as it is, wider data becomes `dtype` (float32 for training by default).

  Passes and copies (see docs/DATA.md): one read of the source, which checks
  every value is finite, accumulates the statistics of the training rows and
  writes every row once into its split; then one in-place pass over the
  splits to standardize them (none with `preprocess='none'`). The only
  whole-data allocation is the splits themselves; everything else is one
  block of about `chunks.CHUNK_BYTES`. A source wider than the splits
  (float64 data prepared in float32) is read a second time instead, so
  standardization happens before rounding.

  Sample weights (`raw.w`, `raw.w_test`) are split with the rows they
  belong to. `class_weight='balanced'` multiplies them by scikit-learn's
  `n / (C · count)` of each class, counted on the training split and applied
  to every split (`class_weights`).

  Args:
    progress: an optional `str -> None` callable told the memory needed up
      front and how the passes go (rows done, MB/s), for data of at least
      `PROGRESS_BYTES`.
    class_weight: `None` or `'balanced'`.

  Raises:
    ValueError: bad fractions, too few rows, non-finite values (by row and
      column), or splits that cannot fit in the memory available (with the
      figure and the `--stream` advice), all before any copy is made.
  """
  validation.check_name('preprocessing', preprocess, PREPROCESSING)
  if class_weight not in (None, 'none', 'balanced'):
    raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}.")
  if class_weight == 'balanced' and raw.kind != 'class':
    raise ValueError(f"{name}: class_weight='balanced' needs class labels, but the targets are real numbers.")
  n, d = raw.x.shape
  idx = split_indices(n, val_fraction, test_fraction, seed, raw.test is not None, name)
  dt = host_dtype(raw.x.dtype, dtype)
  sources = [(raw.x, idx, name)]
  if raw.test is not None:
    x_test = raw.test[0] if isinstance(raw.test[0], np.ndarray) else np.asarray(raw.test[0])
    sources.append((x_test, {'test': np.arange(len(x_test))}, f'{name} (test)'))
  # float64 data (the bundled datasets, csv) keeps the shuffled gather whatever the training dtype, so
  # --dtype=float64 and float32 runs see the same rows in the same order.
  in_place = dt != np.float64 and all(src.dtype == dt for src, _, _ in sources)
  if in_place:  # rows in file order within each split (training shuffles every epoch)
    sources = [(src, {s: np.sort(i) for s, i in rows.items()}, where) for src, rows, where in sources]
  sizes = {s: sum(len(r.get(s, ())) for _, r, _ in sources) for s in ('train', 'val', 'test')}
  total_rows = sum(sizes.values())
  need = memory_needed(total_rows, d, dt)
  report = progress if total_rows * d * raw.x.dtype.itemsize >= PROGRESS_BYTES else None
  if report:
    avail = memory_available()
    report(
      f'{name}: {total_rows:,} rows x {d:,} features, {raw.x.dtype} in the file, kept as {dt}; '
      f'needs {_size(need)} of memory' + (f' ({_size(avail)} available)' if avail is not None else '')
    )
  check_memory(need, name)
  out = {s: np.empty((sizes[s], d), dt) for s in sizes}
  stats = chunks.ColumnStats(d) if preprocess != 'none' else None
  tick = _Progress(report, total_rows, d * raw.x.dtype.itemsize)
  if in_place:
    _read_into_splits(sources, out, stats, tick)
  else:
    _read_statistics(sources, stats, tick)
  shift, scale = np.zeros(d), np.ones(d)
  if stats is not None:
    shift = stats.mean
  if preprocess == 'standardize':
    sd = stats.std
    scale = np.where(sd > 1e-12 * max(1.0, float(np.max(np.abs(shift) + sd, initial=0.0))), sd, 1.0)
  if in_place:
    if stats is not None:
      _standardize_in_place(out, shift, scale)
  else:
    _gather_standardized(sources, out, shift, scale)
  ydt = np.int32 if raw.kind == 'class' else dtype
  rows = sources[0][1]
  y_test = np.asarray(raw.test[1])[sources[1][1]['test']] if raw.test is not None else raw.y[rows['test']]
  ys = {'train': raw.y[rows['train']], 'val': raw.y[rows['val']], 'test': y_test}
  ws = None
  if raw.w is not None or raw.w_test is not None or class_weight == 'balanced':
    ws = {s: np.ones(len(ys[s])) for s in ys}
    if raw.w is not None:
      ws['train'], ws['val'] = raw.w[rows['train']], raw.w[rows['val']]
      if raw.test is None:
        ws['test'] = raw.w[rows['test']]
    if raw.test is not None and raw.w_test is not None:
      ws['test'] = raw.w_test[sources[1][1]['test']]
    if class_weight == 'balanced':
      per_class = class_weights(ys['train'], raw.num_classes, name)
      for s in ws:
        unseen = ys[s][per_class[ys[s]] == 0] if len(ys[s]) else ()
        if len(unseen):
          raise ValueError(
            f"{name}: class_weight='balanced': class {unseen[0]} occurs in the {s} split but not in the "
            'training split, so it has no weight.'
          )
        ws[s] = ws[s] * per_class[ys[s]]
    if not ws['train'].any():
      raise ValueError(f'{name}: every sample weight of the training split is 0: nothing would be learned.')
    ws = {s: w.astype(dtype) if len(w) else None for s, w in ws.items()}  # an empty split weighs nothing
  return Dataset(
    name=name,
    x_train=out['train'],
    y_train=ys['train'].astype(ydt),
    x_val=out['val'],
    y_val=ys['val'].astype(ydt),
    x_test=out['test'],
    y_test=ys['test'].astype(ydt),
    kind=raw.kind,
    num_classes=raw.num_classes,
    shift=shift,
    scale=scale,
    image_shape=raw.image_shape,
    class_names=raw.class_names,
    extra=raw.extra,
    w_train=None if ws is None else ws['train'],
    w_val=None if ws is None else ws['val'],
    w_test=None if ws is None else ws['test'],
  )


def class_weights(y, num_classes, name='data'):
  """scikit-learn's `'balanced'` class weights, `n / (C · count_c)`, as a `[num_classes]` array.

  `C` counts the classes present in `y` (the training labels); a class absent
  from them gets weight 0.
  """
  counts = np.bincount(np.asarray(y, np.int64), minlength=num_classes).astype(np.float64)
  present = counts > 0
  if not present.any():
    raise ValueError(f"{name}: class_weight='balanced' needs training labels.")
  out = np.zeros(len(counts))
  out[present] = len(y) / (present.sum() * counts[present])
  return out


def _non_finite(block, where, first_row):
  bad = chunks.first_non_finite(block)
  if bad:
    raise ValueError(
      f'{where}: {bad[0]} non-finite feature value(s) in rows {first_row}-{first_row + len(block) - 1}; '
      f'first at example {first_row + bad[1]}, feature {bad[2]}: {bad[3]}.'
    )


def _read_into_splits(sources, out, stats, tick):
  """The one read of the sources: each block's rows copied straight into their splits.

  Rows are taken in file order, so a block's rows of one split land in one
  contiguous range of it; that range, still in the CPU cache, is then checked
  for non-finite values and added to the training statistics.
  """
  done = 0
  offset = {'train': 0, 'val': 0, 'test': 0}
  for src, rows, where in sources:
    step = chunks.rows_per_chunk(src)
    for a, b in chunks.blocks(len(src), step):
      block = src[a:b]
      for s, r in rows.items():
        lo, hi = np.searchsorted(r, (a, b))
        if hi == lo:
          continue
        dest = out[s][offset[s] + lo : offset[s] + hi]
        if hi - lo == b - a:
          dest[...] = block
        else:
          np.take(block, r[lo:hi] - a, axis=0, out=dest)
        if s == 'train' and stats is not None:
          if not stats.add(dest):
            _non_finite(block, where, a)
        elif not np.isfinite(dest.sum(dtype=np.float32)):
          _non_finite(block, where, a)
      chunks.release(block)
      done += b - a
      tick('reading', done)
    for s, r in rows.items():
      offset[s] += len(r)
  tick('reading', done, final=True)


def _read_statistics(sources, stats, tick):
  """First of two reads of a source wider than the splits: finiteness (of maps) and statistics."""
  done = 0
  for src, rows, where in sources:
    train = np.zeros(len(src), bool)
    train[rows.get('train', [])] = True
    check = chunks.is_mapped(src)  # in-memory data was checked when it was loaded
    for a, b in chunks.blocks(len(src), chunks.rows_per_chunk(src)):
      block = src[a:b]
      if check:
        _non_finite(block, where, a)
      m = train[a:b]
      if stats is not None and m.any() and not stats.add(block[m]):
        _non_finite(block, where, a)
      chunks.release(block)
      done += b - a
      tick('reading', done)
  tick('reading', done, final=True)


def _standardize_in_place(out, shift, scale):
  """`(x − shift) / scale` over the splits, block by block, in place (in float32 for half precision)."""
  for dest in out.values():
    work = dest.dtype if dest.dtype.itemsize >= 4 else np.dtype(np.float32)
    hi, inv = shift.astype(work), (1.0 / scale).astype(work)
    for a, b in chunks.blocks(len(dest), chunks.rows_per_chunk(dest)):
      block = dest[a:b]
      if work == dest.dtype:
        block -= hi
        block *= inv
      else:
        t = block.astype(work)
        t -= hi
        t *= inv
        block[...] = t


def _gather_standardized(sources, out, shift, scale):
  """Second read of a source wider than the splits: rows gathered in split order,
  standardized in float64 and rounded once."""
  for s, dest in out.items():
    start = 0
    for src, rows, _ in sources:
      r = rows.get(s, ())
      for a, b in chunks.blocks(len(r), chunks.rows_per_chunk(dest)):
        dest[start + a : start + b] = (np.asarray(src[r[a:b]], np.float64) - shift) / scale
      if chunks.is_mapped(src):
        chunks.release(src)  # a gather from a map touches pages all over it
      start += len(r)


def params_to_raw(W, b, shift, scale):
  """Folds preprocessing into the weights: scores of raw `x` are `x @ W_rawᵀ + b_raw`.

  With `x' = (x − shift) / scale`: `W x' + b = (W / scale) x + (b − (W / scale) shift)`.
  """
  w_raw = np.asarray(W, np.float64) / scale
  return w_raw, np.asarray(b, np.float64) - w_raw @ shift


def fits_loss(num_classes, kind, loss_targets):
  """Why a dataset's targets do not fit a loss (a message), or `None` if they do."""
  if kind == 'real' and loss_targets != 'real':
    return "has real-valued targets; use a loss with 'real' targets (regression)"
  if kind == 'class' and loss_targets == 'real':
    return "has class labels; use a loss with 'class' targets or, for two classes, 'binary' ones"
  if loss_targets == 'binary' and num_classes != 2:
    return f"has {num_classes} classes; a loss with 'binary' targets needs 2"
  return None
