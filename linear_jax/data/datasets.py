"""Datasets by name: the bundled ones, the synthetic ones and files; splits and preprocessing.

`load` returns a checked `records.Raw` (`x [N, D]` float, `y [N]`) from any
source: scikit-learn's bundled datasets, the generators of `generators.py`,
or a file read by a parser of `readers.py` (the only code that meets
untrusted bytes). `prepare` splits it and fits preprocessing on the training
split only. Data is validated where it enters, so compiled code never meets a
bad label: each problem raises a `ValueError` naming the file (or dataset)
and what is wrong.

Each name has one home, and callers import it from there: arrays made into a
checked `Raw` are `build.from_arrays`, the feature maps are `features`' (e.g.
`histogram_features`), the file formats and `detect_delimiter` are `readers`'.
"""

from collections.abc import Callable
import dataclasses
import os
import stat

import chex
import numpy as np

from linear_jax.data import build
from linear_jax.data import bundled
from linear_jax.data import chunks
from linear_jax.data import memory
from linear_jax.data import npyfile
from linear_jax.data import readers
from linear_jax.data import records
from linear_jax.data.build import check_raw
from linear_jax.data.build import with_test
from linear_jax.data.generators import binary2d
from linear_jax.data.generators import blobs
from linear_jax.data.generators import linreg
from linear_jax.data.readers import CIFAR_CLASSES
from linear_jax.data.readers import IDX_IMAGES
from linear_jax.data.readers import IDX_LABELS
from linear_jax.data.readers import read_cifar_bin
from linear_jax.data.readers import read_cifar_py
from linear_jax.data.readers import read_idx
from linear_jax.data.records import Dataset
from linear_jax.data.records import Raw
from linear_jax.maths import validation

BUILTIN = ('digits', 'breast_cancer', 'diabetes')
SYNTHETIC = ('blobs', 'linreg', 'binary2d')
FILES = ('cifar10', 'mnist', 'npz', 'npy', 'csv')
DATASETS = BUILTIN + SYNTHETIC + FILES
PREPROCESSING = ('standardize', 'center', 'none')
# `Raw.extra` key set by `load`: `(where, test_where)`, how errors name the rows and the test rows (a file).
WHERE = 'where'


def _fail(where, what):
  raise ValueError(f'{where}: {what}')


# ---------------------------------------------------------------- built-in


def load_builtin(name: str) -> Raw:
  """The real datasets bundled with scikit-learn: no download (read by `bundled`, without importing it)."""
  if name == 'digits':
    x, y = bundled.digits()
    return Raw(x, y, 'class', 10, (8, 8), tuple(str(i) for i in range(10)))
  if name == 'breast_cancer':
    x, y = bundled.breast_cancer()
    return Raw(x, y, 'class', 2, class_names=bundled.BREAST_CANCER_CLASSES)
  if name == 'diabetes':
    x, y = bundled.diabetes()
    return Raw(x, y, 'real')
  raise ValueError(f'Unknown built-in dataset {name!r}; valid: {", ".join(BUILTIN)}.')


# ---------------------------------------------------------------- files


# Where each dataset read from files is published (nothing is downloaded at run time).
SOURCES = {
  'CIFAR-10': 'the binary or Python version from https://www.cs.toronto.edu/~kriz/cifar.html, unpacked',
  'MNIST IDX': 'the four IDX files of MNIST or of Fashion-MNIST (github.com/zalandoresearch/fashion-mnist)',
}


def _find_dir(data_dir, names, what):
  """`data_dir` itself if it holds one of `names`, else its one subfolder that does."""
  if not data_dir:
    raise ValueError(f'{what} needs --data_dir: the folder of {SOURCES[what]}, or the folder above it.')
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
    f'{data_dir}: no {what} files found here or one folder below (looked for {", ".join(names)}); '
    f'put {SOURCES[what]} there.'
  )


def load_cifar10(data_dir: str | None) -> Raw:
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


def _idx_path(d, stem):
  for name in (stem, stem + '.gz'):
    if os.path.exists(os.path.join(d, name)):
      return os.path.join(d, name)
  return None


def load_mnist(data_dir: str | None) -> Raw:
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


def load_npz(path: str, real: bool = False) -> Raw:
  """A `.npz` with arrays `x` `[N, D]` (or `[N, ...]`, flattened) and `y`; never unpickles.

  Optional arrays: `w` (`[N]` sample weights), and a held-out test split
  `x_test`, `y_test` (and `w_test`). Arrays stored uncompressed (`np.savez`)
  are memory-mapped, so `x` is read once, in blocks, by `prepare`;
  compressed ones are read into memory. `real`: whole-number targets are
  real numbers (`build.raw_from_file`); `y_test` is read as `y` is.
  """

  def check_size(decompressed):  # decompressed into memory, then prepared into splits of about the same size
    memory.check_memory(
      2 * decompressed + 4 * chunks.CHUNK_BYTES,
      path,
      advice='a compressed npz must be decompressed whole: save it with np.savez (uncompressed) or as '
      '.npy, then train with --stream, which reads the file in blocks.',
    )

  a = readers.npz_arrays(path, ('x', 'y', 'w', 'x_test', 'y_test', 'w_test'), check_size)
  if (a['x_test'] is None) != (a['y_test'] is None):
    _fail(path, 'has one of x_test and y_test but not the other; a test split needs both.')
  if a['w_test'] is not None and a['x_test'] is None:
    _fail(path, 'has w_test but no test split (x_test, y_test) for it to weigh.')
  raw = build.raw_from_file(a['x'], a['y'], a['w'], path, real=real)
  if a['x_test'] is not None:
    test_real = real or raw.kind == 'real'
    test = build.raw_from_file(a['x_test'], a['y_test'], a['w_test'], f'{path} (x_test)', real=test_real)
    raw = with_test(raw, test, f'{path} (x_test)', f'{path} (x)', f'{path} (y_test)', f'{path} (y)')
  return raw


def load_npy(path: str, labels_path: str | None, real: bool = False) -> Raw:
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
  if x.ndim < 2:
    _fail(path, f'features must be [N, D] (or [N, ...] images), got shape {x.shape}.')
  y = readers.read_npy_labels(labels_path)
  if len(y) != len(x):
    _fail(labels_path, f'{len(y)} labels but {path} has {len(x)} rows.')
  return build.raw_from_file(x, y, None, path, labels_where=labels_path, real=real)


def load_csv(
  path: str,
  target_column: int | str = -1,
  delimiter: str | None = None,
  weight_column: int | str | None = None,
  real: bool = False,
) -> Raw:
  """A `.csv`, one example a row: numeric features, a target column of numbers or text labels.

  Args:
    path: the file.
    target_column: the target column, by header name or index.
    delimiter: `','`, `';'` or tab; `None` detects it (`detect_delimiter`).
    weight_column: an optional column of sample weights (name or index),
      removed from the features.
    real: read whole-number targets as real numbers (`build.raw_from_file`).
  """
  x, y, w, names = readers.read_csv(path, target_column, delimiter, weight_column)
  raw = build.raw_from_file(x, y, w, path, real=real)
  return raw if names is None else dataclasses.replace(raw, extra={**raw.extra, build.FEATURE_NAMES: names})


# ---------------------------------------------------------------- entry


def load(
  name: str,
  data_dir: str | None = None,
  data_path: str | None = None,
  target_column: int | str = -1,
  labels_path: str | None = None,
  num_examples: int = 600,
  num_features: int = 2,
  num_classes: int = 3,
  seed: int = 0,
  check_values: bool = True,
  test_path: str | None = None,
  test_labels_path: str | None = None,
  delimiter: str | None = None,
  weight_column: int | str | None = None,
  real_targets: bool = False,
) -> Raw:
  """Loads any dataset by name; file datasets read `data_dir` or `data_path`.

  `.npy` features, and `x` stored uncompressed in an `.npz`, come back as
  read-only memory maps in the file's dtype. `check_values=False` leaves
  their finiteness check to `prepare`'s one read (the experiments do so);
  with `True` it costs a read of the file here.

  `test_path` (npz, npy with `test_labels_path`, csv) is a held-out test
  file in the format of `data_path`, checked against it (`with_test`);
  `prepare` then takes no test split from `data_path`. `delimiter` and
  `weight_column` are the csv's (see `load_csv`). With `real_targets` (a
  regression loss) a file's whole-number targets are real numbers, not
  class labels; the test file's are read as the training file's.
  """
  validation.check_name('dataset', name, DATASETS)
  data_dir = os.path.expanduser(data_dir) if data_dir else data_dir  # '--data_dir=~/x' reaches us unexpanded
  expand = lambda p: os.path.expanduser(p) if p else p  # noqa: E731
  data_path, labels_path, test_path, test_labels_path = map(
    expand, (data_path, labels_path, test_path, test_labels_path)
  )
  _check_load_flags(name, labels_path, test_path, test_labels_path, weight_column)
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
    raw, where = _load_files(
      name,
      data_path,
      labels_path,
      test_path,
      test_labels_path,
      target_column,
      delimiter,
      weight_column,
      real_targets,
    )
  check_raw(raw, where, check_values, labels_where=labels_path)
  test_where = test_path or f'{where} (test split)'
  if raw.test is not None:
    test_raw = dataclasses.replace(raw, x=raw.test[0], y=raw.test[1])
    check_raw(test_raw, test_where, check_values, labels_where=test_labels_path, training=False)
  # How `prepare`'s errors (a non-finite value, by row) name the rows: by their file.
  return dataclasses.replace(raw, extra={**raw.extra, WHERE: (where, test_where)})


def _check_load_flags(name, labels_path, test_path, test_labels_path, weight_column):
  """Refuses a file flag that `--dataset=name` has no use for (a test file, a weight column, labels)."""
  if test_path and name not in ('npz', 'npy', 'csv'):
    raise ValueError(f'--test_path needs a file dataset (npz, npy, csv), not --dataset={name}.')
  if weight_column not in (None, '') and name != 'csv':
    raise ValueError('--weight_column is for --dataset=csv; an npz holds its weights as an array w.')
  for flag, given in (('labels_path', labels_path), ('test_labels_path', test_labels_path)):
    if given and name != 'npy':
      raise ValueError(
        f'--{flag} is for --dataset=npy; --dataset={name} holds its labels itself '
        '(an npz as an array y, a csv in its target column).'
      )
  if test_labels_path and not test_path:
    raise ValueError('--test_labels_path names the labels of a --test_path file; give --test_path too.')


def _load_files(
  name,
  data_path,
  labels_path,
  test_path,
  test_labels_path,
  target_column,
  delimiter,
  weight_column,
  real_targets,
):
  """`(raw, where)` of a file dataset: `data_path`'s rows, with `test_path`'s as their test split if given."""
  if not data_path:
    raise ValueError(f'--dataset={name} needs --data_path=FILE.')
  raw = _load_file(name, data_path, labels_path, target_column, delimiter, weight_column, real=real_targets)
  build.check_class_count(raw, labels_path or data_path)
  if test_path:
    if raw.test is not None:
      raise ValueError(
        f'{data_path}: holds x_test and y_test already; --test_path={test_path} would be a second.'
      )
    test = _load_file(
      name,
      test_path,
      test_labels_path,
      target_column,
      delimiter,
      weight_column,
      test=True,
      real=real_targets or raw.kind == 'real',
    )
    if test.test is not None:
      raise ValueError(f'{test_path}: a test file cannot hold a test split (x_test) of its own.')
    raw = with_test(
      raw, test, test_path, data_path, labels_where=test_labels_path, train_labels_where=labels_path
    )
  return raw, data_path


def _check_regular(path, flag, pipe_ok=False):
  """Refuses a path that exists but is not a regular file: a directory or a device (`/dev/zero` would
  be read until memory ran out); a pipe too, unless `pipe_ok` (a csv is read as a stream, so
  `--data_path=<(zcat t.csv.gz)` works; an npy or npz is mapped and seeked in). A missing path, a
  dangling link or a link loop is said not to exist (`npyfile.check_exists`)."""
  npyfile.check_exists(path)
  try:
    mode = os.stat(path).st_mode
  except OSError:
    return  # a missing or unreadable file: the reader names it
  if stat.S_ISDIR(mode):
    raise ValueError(f'{path}: is a directory; --{flag} names a file.')
  if stat.S_ISFIFO(mode) and not pipe_ok:
    raise ValueError(f'{path}: a pipe, but an npy or npz file is read in place: save it to a file first.')
  if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
    raise ValueError(f'{path}: not a regular file (a device); --{flag} names a file.')


def _load_file(name, path, labels_path, target_column, delimiter, weight_column, test=False, real=False):
  _check_regular(path, 'test_path' if test else 'data_path', pipe_ok=name == 'csv')
  if labels_path:
    _check_regular(labels_path, 'test_labels_path' if test else 'labels_path')
  if name == 'npz':
    return load_npz(path, real)
  if name == 'npy':
    return load_npy(path, labels_path, real)
  return load_csv(path, target_column, delimiter or None, weight_column, real)


def split_indices(
  n: int,
  val_fraction: float = 0.1,
  test_fraction: float = 0.2,
  seed: int = 0,
  has_test: bool = False,
  name: str = 'data',
) -> dict[str, np.ndarray]:
  """Rows of each split, `{'train', 'val', 'test'}` -> int64 indices, shuffled by `seed`.

  With `has_test` (the format or a file gives the test split) no test rows
  are taken from the `n` rows. The same seed gives the same split.
  """
  _, n_val, n_test = split_sizes(n, val_fraction, test_fraction, has_test, name)
  order = np.random.default_rng(seed).permutation(n)
  return {'test': order[:n_test], 'val': order[n_test : n_test + n_val], 'train': order[n_test + n_val :]}


def split_sizes(n, val_fraction, test_fraction, has_test=False, name='data'):
  """`(n_train, n_val, n_test)` of `n` rows (`n_test` is 0 with `has_test`: the test split is given apart).

  Raises a `ValueError` for a fraction outside `[0, 1)`, fractions that leave nothing to train on
  (their sum 1 or more, where rounding could still leave a row or two), or no training row.
  """
  for what, f in (('val_fraction', val_fraction), ('test_fraction', test_fraction)):
    if not 0 <= f < 1:
      raise ValueError(f'{what} must be in [0, 1), got {f}.')
  if not has_test and val_fraction + test_fraction >= 1:
    raise ValueError(
      f'{name}: val_fraction={val_fraction} and test_fraction={test_fraction} hold out every row; '
      'their sum must be < 1, the rest being the training split.'
    )
  n_test = 0 if has_test else int(round(test_fraction * n))
  n_val = int(round(val_fraction * n))
  if n - n_test - n_val < 1:
    raise ValueError(
      f'{name}: {n} examples leave no training split with '
      f'val_fraction={val_fraction}, test_fraction={test_fraction}.'
    )
  return n - n_test - n_val, n_val, n_test


def host_dtype(source_dtype: np.dtype, dtype: np.dtype = np.float32) -> np.dtype:
  """The dtype the prepared splits keep on the host: the file's, if it is a narrower float.

  float16 and bfloat16 features stay 2 bytes wide (training widens them on
  the device); float32 stays float32; anything wider, and integers, become
  `dtype` (the training dtype).
  """
  source_dtype, dtype = np.dtype(source_dtype), np.dtype(dtype)
  if chunks.is_float(source_dtype) and source_dtype.itemsize < dtype.itemsize:
    return source_dtype.newbyteorder('=')  # a big-endian file's values are swapped as they are copied
  return dtype


def memory_needed(num_rows: int, num_features: int, dtype: np.dtype = np.float32) -> int:
  """Bytes of host memory `prepare` needs for `num_rows` x `num_features` rows kept in `dtype`.

  The prepared splits (one copy of the rows, in `host_dtype`), plus a few
  blocks of working space. A memory-mapped source costs nothing more (its
  pages are released as they are read); one already in memory is not counted
  again.
  """
  return int(num_rows) * int(num_features) * np.dtype(dtype).itemsize + 4 * chunks.CHUNK_BYTES


# Loads of at least this many bytes report progress (rows done, MB/s) through `prepare`'s `progress`.
PROGRESS_BYTES = 256 * 2**20

# The smallest spread standardized: far above float32's smallest normal number (1.2e-38), so the
# standardized values keep float32's precision.
TINY_SPREAD = 1e-30
# `Dataset.extra` key: the indices of the training split's constant columns (with 'standardize').
CONSTANT = 'constant_columns'


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
  raw: Raw,
  name: str = 'data',
  val_fraction: float = 0.1,
  test_fraction: float = 0.2,
  preprocess: str = 'standardize',
  seed: int = 0,
  dtype: np.dtype = np.float32,
  progress: Callable[[str], None] | None = None,
  class_weight: str | None = None,
) -> Dataset:
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
  check_prepare_args(raw, name, preprocess, class_weight, val_fraction, test_fraction, seed, dtype)
  n, d = raw.x.shape
  dt = host_dtype(build.float_dtype(raw.x.dtype), dtype)  # an integer map: as if read as floats
  report, total_rows = _check_prepare_memory(raw, name, dt, progress)
  idx = split_indices(n, val_fraction, test_fraction, seed, raw.test is not None, name)
  sources, in_place = _split_sources(raw, name, idx, dt)
  out, shift, scale, constant = _fill_splits(raw, sources, in_place, preprocess, dt, report, total_rows, name)
  ys, ws = _split_targets(raw, sources, class_weight, dtype, name)
  ds = _dataset(raw, name, out, shift, scale, ys, ws, dtype, preprocess)
  extra = {**ds.extra, CONSTANT: constant} if constant else ds.extra
  # A standardized column's spread is 1; any other is measured, for `records.gradient_scale`.
  spread = 1.0 if preprocess == 'standardize' else chunks.column_spread(out['train'])
  return dataclasses.replace(ds, extra=extra, feature_spread=spread)


def _dataset(raw, name, out, shift, scale, ys, ws, dtype, preprocess):
  """The `Dataset` of the splits' features `out`, targets `ys` and weights `ws` (or `None`).

  Class labels become int32, real targets `dtype`.
  """
  ydt = np.int32 if raw.kind == 'class' else dtype
  ys, target_shift, target_scale = records.standardize_targets(ys, raw.kind, preprocess)
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
    target_shift=target_shift,
    target_scale=target_scale,
  )


def check_prepare_args(
  raw, name, preprocess, class_weight, val_fraction=0.0, test_fraction=0.0, seed=0, dtype=np.float32
):
  """Refuses what `prepare` and `stream.prepare` are given wrong, naming it, before any row is read:
  a `raw` that is no `Raw`, fractions that are no numbers, a bad seed, a training dtype that is not a
  float, an unknown `preprocess` or `class_weight`, and `'balanced'` weights for real targets."""
  if not isinstance(raw, Raw):
    raise ValueError(f'{name}: prepare takes a Raw (data.load, build.from_arrays), got {type(raw).__name__}.')
  for what, f in (('val_fraction', val_fraction), ('test_fraction', test_fraction)):
    if not validation.is_number(f):
      raise ValueError(f'{what} must be a number in [0, 1), got {f!r}.')
  validation.check_seed('seed', seed)
  if not np.issubdtype(np.dtype(dtype), np.floating):
    raise ValueError(f'dtype must be a float dtype (float32, float64), got {np.dtype(dtype).name}.')
  validation.check_name('preprocessing', preprocess, PREPROCESSING)
  if class_weight not in (None, 'none', 'balanced'):
    raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}.")
  if class_weight == 'balanced' and raw.kind != 'class':
    raise ValueError(f"{name}: class_weight='balanced' needs class labels, but the targets are real numbers.")


def _check_prepare_memory(raw, name, dt, progress):
  """`(report, total_rows)`: checks the splits of every row in `dt` fit in memory, telling `progress`.

  `report` is `progress` for data of at least `PROGRESS_BYTES`, else `None`.
  """
  n, d = raw.x.shape
  # Every row lands in one split: the memory is known, and checked, before any work.
  total_rows = n + (len(raw.test[0]) if raw.test is not None else 0)
  need = memory_needed(total_rows, d, dt)
  report = progress if total_rows * d * raw.x.dtype.itemsize >= PROGRESS_BYTES else None
  if report:
    avail = memory.memory_available()
    report(
      f'{name}: {total_rows:,} rows x {d:,} features, {raw.x.dtype} in the file, kept as {dt}; '
      f'needs {memory.size_text(need)} of memory'
      + (f' ({memory.size_text(avail)} available)' if avail is not None else '')
    )
  memory.check_memory(need, name)
  return report, total_rows


def _split_sources(raw, name, idx, dt):
  """`(sources, in_place)`: `[(x, {split: rows}, where)]` of the data and its test file, if any.

  `in_place` when every source already holds `dt` (not float64): each split's
  rows are then taken in file order, to be copied straight into the split.
  """
  where, test_where = raw.extra.get(WHERE, (name, f'{name} (test)'))
  sources = [(raw.x, idx, where)]
  if raw.test is not None:
    x_test = raw.test[0] if isinstance(raw.test[0], np.ndarray) else np.asarray(raw.test[0])
    sources.append((x_test, {'test': np.arange(len(x_test))}, test_where))
  # float64 data (the bundled datasets, csv) keeps the shuffled gather whatever the training dtype, so
  # --dtype=float64 and float32 runs see the same rows in the same order.
  in_place = dt != np.float64 and all(
    build.float_dtype(src.dtype).newbyteorder('=') == dt for src, _, _ in sources
  )
  if in_place:  # rows in file order within each split (training shuffles every epoch)
    sources = [(src, {s: np.sort(i) for s, i in rows.items()}, where) for src, rows, where in sources]
  return sources, in_place


def _fill_splits(raw, sources, in_place, preprocess, dt, report, total_rows, name='data'):
  """`(out, shift, scale, constant)`: the `{split: [n_split, D]}` features of dtype `dt`, preprocessed.

  `shift` and `scale` are `[D]` float64, fitted on the training rows (0 and 1
  with `preprocess='none'`; `standard_scale`), `constant` the indices of the
  constant columns; `report` is told how the passes go.
  """
  d = raw.x.shape[1]
  sizes = {s: sum(len(r.get(s, ())) for _, r, _ in sources) for s in ('train', 'val', 'test')}
  # Aligned, so that moving a split to the CPU device takes it as it is (no copy).
  out = {s: chunks.aligned_empty((sizes[s], d), dt) for s in sizes}
  stats = chunks.ColumnStats(d) if preprocess != 'none' else None
  tick = _Progress(report, total_rows, d * raw.x.dtype.itemsize)
  if in_place:
    _read_into_splits(sources, out, stats, tick)
  else:
    _read_statistics(sources, stats, tick)
  shift, scale = np.zeros(d), np.ones(d)
  if stats is not None:
    shift = stats.mean
  constant = ()
  if preprocess == 'standardize':
    scale = standard_scale(shift, stats.std, raw.extra.get(WHERE, (name,))[0])
    constant = tuple(int(j) for j in np.flatnonzero(chunks.constant_columns(shift, stats.std)))
  if in_place:
    if stats is not None:
      # The splits subtract the shift in their own dtype: the dataset records the shift they subtract,
      # so that `params_to_raw` undoes exactly what was done (a mean of 1e6 rounds by up to 0.03).
      shift = shift.astype(_work_dtype(dt)).astype(np.float64)
      _standardize_in_place(out, shift, scale, sources)
  else:
    _gather_standardized(sources, out, shift, scale)
  return out, shift, scale, constant


def standard_scale(mean: np.ndarray, sd: np.ndarray, where: str = 'data') -> np.ndarray:
  """Each column's standardizing scale, decided per column: its `sd`, or 1 for a constant column.

  A column is constant when its spread is within float64's rounding of its
  own mean (`sd <= CONSTANT_ULPS · ε · |mean|`, the noise of the float64
  statistics), however large or small the other columns are: a nanosecond
  timestamp beside pixel values, or a feature of spread 1e-13, is
  standardized as any other. A spread too small for float32 to hold its
  inverse (below `TINY_SPREAD`) cannot be standardized in the training dtype
  and is refused, naming the column.
  """
  sd = np.asarray(sd, np.float64)
  constant = chunks.constant_columns(mean, sd)
  tiny = np.flatnonzero(~constant & (sd < TINY_SPREAD))
  if tiny.size:
    j = int(tiny[0])
    raise ValueError(
      f'{where}: feature {j} varies by only {sd[j]:.3g} (standard deviation), too little to standardize '
      'in float32; multiply the features by a power of ten, or use --preprocess=none.'
    )
  return np.where(constant, 1.0, sd)


def _split_targets(raw, sources, class_weight, dtype, name):
  """`(ys, ws)`: each split's `[n_split]` targets, and its sample weights (`split_weights`: or `None`)."""
  rows = sources[0][1]
  y_test = np.asarray(raw.test[1])[sources[1][1]['test']] if raw.test is not None else raw.y[rows['test']]
  ys = {'train': raw.y[rows['train']], 'val': raw.y[rows['val']], 'test': y_test}
  test_rows = sources[1][1]['test'] if raw.test is not None else rows['test']
  ws = split_weights(
    raw, {'train': rows['train'], 'val': rows['val'], 'test': test_rows}, ys, class_weight, dtype, name
  )
  return ys, ws


def class_weights(y: np.ndarray, num_classes: int, name: str = 'data') -> np.ndarray:
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


def split_weights(raw: Raw, rows: dict, ys: dict, class_weight: str | None, dtype, name: str) -> dict | None:
  """`{split: [n] weights of dtype, or None for an empty split}`, or `None` when nothing is weighted.

  `rows[split]` indexes the rows of `raw.x` in the split (of `raw.test`'s
  arrays for 'test' when the data has a held-out test split); `ys[split]` are
  their labels. The file's sample weights (`raw.w`, `raw.w_test`) travel with
  their rows; `class_weight='balanced'` multiplies them by scikit-learn's
  `n / (C · count)` of each class, counted on the training split.
  """
  if raw.w is None and raw.w_test is None and class_weight != 'balanced':
    return None
  ws = {s: np.ones(len(ys[s])) for s in ys}
  if raw.w is not None:
    ws['train'], ws['val'] = raw.w[rows['train']], raw.w[rows['val']]
    if raw.test is None:
      ws['test'] = raw.w[rows['test']]
  if raw.test is not None and raw.w_test is not None:
    ws['test'] = raw.w_test[rows['test']]
  if class_weight == 'balanced':
    per_class = class_weights(ys['train'], raw.num_classes, name)
    for s, w in ws.items():
      unseen = ys[s][per_class[ys[s]] == 0] if len(ys[s]) else ()
      if len(unseen):
        raise ValueError(
          f"{name}: class_weight='balanced': class {unseen[0]} occurs in the {s} split but not in the "
          'training split, so it has no weight.'
        )
      ws[s] = w * per_class[ys[s]]
  if not ws['train'].any():
    raise ValueError(f'{name}: every sample weight of the training split is 0: nothing would be learned.')
  where, test_where = raw.extra.get(WHERE, (name, name))
  out = {}
  for s, w in ws.items():
    with np.errstate(over='ignore'):  # answered below, by row
      cast = w.astype(dtype)
    if len(w) and not np.isfinite(cast).all():
      i = int(np.argmax(~np.isfinite(cast)))
      raise ValueError(
        f'{test_where if s == "test" else where}: sample weight {w[i]:g} at row {int(rows[s][i])} '
        f'overflows {np.dtype(dtype)}, the training dtype; rescale the weights.'
      )
    if len(w) and w.any() and not cast.any():
      raise ValueError(
        f'{test_where if s == "test" else where}: the sample weights of the {s} split (the largest '
        f'{w.max():g}) all round to 0 in {np.dtype(dtype)}, the training dtype; rescale the weights.'
      )
    out[s] = cast if len(w) else None  # an empty split weighs nothing
  return out


def _non_finite(block, where, first_row):
  bad = chunks.first_non_finite(block)
  if bad:
    raise ValueError(
      f'{where}: {bad[0]} non-finite feature value(s) in rows {first_row}-{first_row + len(block) - 1}; '
      f'first at example {first_row + bad[1]}, feature {bad[2]}: {bad[3]}.'
    )


def overflow_bounds(shift: np.ndarray, scale: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
  """`(lo, hi)`, float64 `[D]`: a raw value outside `[lo, hi]` overflows `dtype` when standardized.

  `(x − shift) / scale` is computed in `dtype` (on the host or the device),
  so both `x − shift` and the quotient must stay within its largest value
  `M`: `|x − shift| ≤ M · min(1, scale)`. A finite 3.4e38 in a float32 file
  passes every finiteness check and becomes inf here.
  """
  top = float(np.finfo(np.dtype(dtype)).max)
  with np.errstate(over='ignore'):
    room = top * np.minimum(1.0, np.asarray(scale, np.float64))
    shift = np.asarray(shift, np.float64)
    return shift - room, shift + room


def first_overflow(block, lo, hi) -> tuple[int, int] | None:
  """`(row, column)` in `block` of the first value outside `[lo, hi]` (`overflow_bounds`), or `None`."""
  if block.dtype.itemsize < 4:  # float16, bfloat16: compared as float32
    block = block.astype(np.float32)
  with np.errstate(invalid='ignore'):
    bad = (block < lo) | (block > hi)
  if not bad.any():
    return None
  i, j = np.argwhere(bad)[0]
  return int(i), int(j)


def overflow_error(where, row, column, value, shift, scale, dtype):
  """The `ValueError` of a finite raw value whose standardization overflows `dtype` (`overflow_bounds`)."""
  dt = np.dtype(dtype)
  if float(shift[column]) == 0 and float(scale[column]) == 1:  # the value itself is too large
    return ValueError(
      f"{where}: row {row}, feature {column}: {float(value):g} is finite, but beyond {dt.name}'s largest "
      f'value, {float(np.finfo(dt).max):.3g} ({dt.name} is the training dtype); rescale that feature, or '
      'train in float64 (--dtype=float64).'
    )
  return ValueError(
    f'{where}: row {row}, feature {column}: {float(value):g} is finite, but standardizing it overflows '
    f"{dt.name} ((x - mean) / std with the training rows' mean {float(shift[column]):.3g} and std "
    f"{float(scale[column]):.3g} is beyond {dt.name}'s largest value, {float(np.finfo(dt).max):.3g}); "
    'rescale that feature, or use --preprocess=none.'
  )


def _too_large(where, first_row, stop):
  raise ValueError(
    f'{where}: rows {first_row}-{stop - 1}: feature values too large for the preprocessing statistics '
    '(their squares overflow float64); rescale the features, or use --preprocess=none.'
  )


def _read_into_splits(sources, out, stats, tick):
  """The one read of the sources: each block's rows copied straight into their splits.

  Rows are taken in file order, so a block's rows of one split land in one
  contiguous range of it; that range, still in the CPU cache, is then checked
  for non-finite values and summed for the training statistics. Blocks are
  copied by `chunks.workers()` threads; their sums are merged in block order,
  so the statistics do not depend on the number of threads, and the first
  block in file order with a non-finite value is the one named.
  """
  done = 0
  offset = {'train': 0, 'val': 0, 'test': 0}
  dest_dtype = out['train'].dtype  # every split's
  for src, rows, where in sources:
    # Blocks sized as the values are read (an integer map's as its float copy's): the same blocks,
    # so the same statistics, bit for bit, as the same data read into memory.
    step = chunks.rows_per_chunk(src, dtype=build.float_dtype(src.dtype))
    train = rows.get('train', ())
    if stats is not None and len(train):  # the shift: the mean of the first block's training rows
      a = train[0] // step * step
      chunks.check_mapped(src)
      block = src[a : a + step]
      stats.set_reference(block[train[: np.searchsorted(train, a + step)] - a])
      chunks.release(block)
    base = dict(offset)

    def copy(block_range, src=src, rows=rows, base=base):
      a, b = block_range
      chunks.check_mapped(src)  # a file truncated while mapped: one line, not SIGBUS
      mapped = src[a:b]
      block = mapped if mapped.dtype == dest_dtype else mapped.astype(dest_dtype)  # swapped, or widened
      ok, sums, unsummed = True, None, False
      for s, r in rows.items():
        lo, hi = np.searchsorted(r, (a, b))
        if hi == lo:
          continue
        dest = out[s][base[s] + lo : base[s] + hi]
        if hi - lo == b - a:
          dest[...] = block
        else:
          np.take(block, r[lo:hi] - a, axis=0, out=dest)
        if s == 'train' and stats is not None:
          sums = stats.sums(dest)
          ok = ok and sums is not None
          unsummed = sums is None
        else:
          ok = ok and bool(np.isfinite(dest.sum(dtype=np.float32)))
      chunks.release(mapped)
      return a, b, ok, sums, unsummed

    for a, b, ok, sums, unsummed in chunks.in_order(copy, chunks.blocks(len(src), step)):
      if not ok:
        _non_finite(src[a:b], where, a)
      if unsummed:  # every value finite, yet the statistics overflow
        _too_large(where, a, b)
      if sums is not None:
        stats.merge(sums)
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
    for a, b in chunks.blocks(len(src), chunks.rows_per_chunk(src, dtype=build.float_dtype(src.dtype))):
      chunks.check_mapped(src)
      block = src[a:b]
      if check:
        _non_finite(block, where, a)
      m = train[a:b]
      if stats is not None and m.any() and not stats.add(block[m]):
        _non_finite(block, where, a)
        _too_large(where, a, b)
      chunks.release(block)
      done += b - a
      tick('reading', done)
  tick('reading', done, final=True)


def _work_dtype(dtype):
  """The dtype `_standardize_in_place` computes in: the splits' own, float32 for half precision."""
  dtype = np.dtype(dtype)
  return dtype if dtype.itemsize >= 4 else np.dtype(np.float32)


def _standardize_in_place(out, shift, scale, sources):
  """`(x − shift) / scale` over the splits, block by block, in place (in float32 for half precision).

  Blocks are independent, so `chunks.workers()` threads share them. A finite
  value whose standardization would overflow is refused before its block is
  changed, named by its file row (`_overflow`).
  """
  work = _work_dtype(next(iter(out.values())).dtype)
  lo, hi_bound = overflow_bounds(shift, scale, work)

  def standardize(job):
    split, dest, a, b = job
    hi, inv = shift.astype(work), (1.0 / scale).astype(work)
    block = dest[a:b]
    found = first_overflow(block, lo, hi_bound)
    if found:
      return split, (a + found[0], found[1])
    if work == dest.dtype:
      block -= hi
      block *= inv
    else:
      t = block.astype(work)
      t -= hi
      t *= inv
      block[...] = t
    return split, None

  jobs = [
    (s, dest, a, b)
    for s, dest in out.items()
    for a, b in chunks.blocks(len(dest), chunks.rows_per_chunk(dest))
  ]
  for split, found in chunks.in_order(standardize, jobs):
    if found:
      _overflow(sources, split, found, shift, scale, work)


def _gather_standardized(sources, out, shift, scale):
  """Second read of a source wider than the splits: rows gathered in split order,
  standardized in float64 and rounded once (a value that would overflow then: `_overflow`)."""
  for s, dest in out.items():
    lo, hi = overflow_bounds(shift, scale, dest.dtype)
    start = 0
    for src, rows, _ in sources:
      r = rows.get(s, ())
      for a, b in chunks.blocks(len(r), chunks.rows_per_chunk(dest)):
        chunks.check_mapped(src)
        block = np.asarray(src[r[a:b]], np.float64)
        found = first_overflow(block, lo, hi)
        if found:
          _overflow(sources, s, (start + a + found[0], found[1]), shift, scale, dest.dtype)
        dest[start + a : start + b] = (block - shift) / scale
      if chunks.is_mapped(src):
        chunks.release(src)  # a gather from a map touches pages all over it
      start += len(r)


def _overflow(sources, split, found, shift, scale, dtype):
  """Raises `overflow_error` for row `found[0]` of `split` (column `found[1]`), named by its file's row."""
  i, j = found
  for src, rows, where in sources:
    r = rows.get(split, ())
    if i < len(r):
      row = int(r[i])
      raise overflow_error(where, row, j, src[row, j], shift, scale, dtype)
    i -= len(r)


def params_to_raw(
  W: chex.Array,
  b: chex.Array,
  shift: np.ndarray,
  scale: np.ndarray,
  target_shift: np.ndarray | None = None,
  target_scale: float | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Folds preprocessing into the weights: scores of raw `x` are `x @ W_rawᵀ + b_raw`.

  With `x' = (x − shift) / scale`: `W x' + b = (W / scale) x + (b − (W / scale) shift)`.
  With standardized targets (`records.standardize_targets`) the scores are
  also mapped back to the targets' units: `target_scale · s + target_shift`
  (one scale per output for `[N, K]` targets).
  """
  w, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
  if w.ndim != 2 or b.shape != w.shape[:1]:
    raise ValueError(f'W must be [C, D] and b [C], got shapes {list(w.shape)} and {list(b.shape)}.')
  for name, v in (('shift', shift), ('scale', scale)):
    if np.shape(v) not in ((), w.shape[1:]):
      raise ValueError(f'{name} must be one number or [D] = [{w.shape[1]}], got shape {list(np.shape(v))}.')
  if not (np.all(np.isfinite(scale)) and np.all(np.asarray(scale) > 0)):  # 0 made W infinite, silently
    raise ValueError('scale must hold finite numbers > 0 (a standard deviation per feature).')
  w_raw = w / scale
  b_raw = b - w_raw @ np.broadcast_to(np.asarray(shift, np.float64), w.shape[1:])
  if target_scale is not None:
    ts = np.asarray(target_scale, np.float64)
    w_raw, b_raw = w_raw * np.reshape(ts, (-1, 1)), b_raw * ts + target_shift
  return w_raw, b_raw
