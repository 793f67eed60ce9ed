"""Parsers of untrusted bytes: CIFAR-10 batches, MNIST IDX, `.npz`, `.npy` labels and `.csv`.

This module is the security surface of the data layer. Each parser reads one
file and returns plain NumPy arrays; whatever the bytes hold, it raises only a
`ValueError` naming the file and what is wrong, and it never unpickles freely
(a CIFAR-10 Python batch goes through a restricted unpickler that admits only
NumPy arrays and builtins; `.npz` and `.npy` are read with `allow_pickle=False`).
Turning the arrays into a dataset (`records.Raw`) is `data.py`'s job.
"""

from collections.abc import Callable
import csv
import gzip
import io
import pickle
import re
import struct
import warnings
import zipfile
import zlib

import numpy as np

from linear_jax.data import npyfile


def _fail(path, what):
  raise ValueError(f'{path}: {what}')


def _read(path: str) -> bytes:
  npyfile.check_exists(path)
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


def read_cifar_bin(path: str) -> tuple[np.ndarray, np.ndarray]:
  """One CIFAR-10 binary batch: records of 1 label byte + 3,072 pixel bytes.

  Returns:
    `(x [N, 3072] float32, y [N] int64)`, labels in `[0, 9]`.
  """
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
  """Admits only what a CIFAR-10 Python batch holds: NumPy arrays and builtins.

  A batch pickled by Python 3 with protocol 2 writes each `bytes` as
  `_codecs.encode(text, 'latin1')`; that call is answered by `_latin1`, which
  takes nothing but a string and that encoding name, so no code from the file
  runs.
  """

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
    if (module, name) == ('_codecs', 'encode'):
      return self._latin1  # how protocol 2 writes bytes; the real function is never handed out
    if (module, name) not in self.ALLOWED:
      raise ValueError(
        f'{self.path}: refused to unpickle {module}.{name}; a CIFAR-10 Python '
        'batch holds only NumPy arrays, lists, bytes and numbers.'
      )
    module = module.replace('numpy.core.', 'numpy._core.')
    return super().find_class(module, name)

  def _latin1(self, text, encoding='utf-8'):
    """`text.encode(encoding)` for the encodings protocol 2 writes bytes with (latin-1); nothing else."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
      raise ValueError(
        f'{self.path}: refused to unpickle _codecs.encode({type(text).__name__}, {encoding!r}); a CIFAR-10 '
        'Python batch holds only NumPy arrays, lists, bytes and numbers.'
      )
    return text.encode('latin-1')


def _flat_labels(labels, path):
  """`b'labels'` as `[N]` int64, refusing before any array is made anything but a flat list of integers.

  A nested list (a few kilobytes of pickle can nest references to one list
  into billions of elements) is refused from its first element, not built.
  """
  if isinstance(labels, np.ndarray):
    if labels.ndim != 1 or labels.dtype.kind not in 'iu':
      _fail(
        path,
        f"b'labels' must be a flat list of integers, got an array of shape {labels.shape}, {labels.dtype}.",
      )
    return labels.astype(np.int64)
  if not isinstance(labels, (list, tuple)):
    _fail(path, f"b'labels' must be a flat list of integers, got {type(labels).__name__}.")
  for i, v in enumerate(labels):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
      what = 'a nested list' if isinstance(v, (list, tuple)) else type(v).__name__
      _fail(path, f"b'labels' must be a flat list of integers; label {i} is {what}.")
  try:
    return np.asarray(labels, np.int64)
  except OverflowError as e:
    raise ValueError(f"{path}: b'labels' hold an integer too large for a label.") from e


def read_cifar_py(path: str) -> tuple[np.ndarray, np.ndarray]:
  """One CIFAR-10 Python batch (a pickled dict), through a restricted unpickler.

  Returns:
    `(x [N, 3072] float32, y [N] int64)`, labels in `[0, 9]`.
  """
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
  y = _flat_labels(labels, path)
  if y.shape != (len(x),):
    _fail(path, f'{len(x)} images but {y.size} labels.')
  out = (y < 0) | (y > 9)
  if out.any():
    i = int(np.argmax(out))
    _fail(path, f'label {y[i]} at index {i} is outside [0, 9].')
  return x.astype(np.float32), y


IDX_IMAGES, IDX_LABELS = 2051, 2049


def read_idx(path: str, expect_magic: int) -> tuple[np.ndarray, tuple[int, int] | None]:
  """An MNIST IDX file (raw or `.gz`): images `[N, H·W]` or labels `[N]`.

  Returns:
    `(x [N, H·W] float32, (H, W))` for `IDX_IMAGES`, `(y [N] int64, None)` for `IDX_LABELS`.
  """
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


def npz_arrays(
  path: str, names: tuple[str, ...], check_size: Callable[[int], None] | None = None
) -> dict[str, np.ndarray | None]:
  """The arrays `names` of an `.npz`, read without pickle; `None` for absent ones.

  The archive must hold `x` and `y`, and nothing but `names`: an array under
  another name (weights saved as `weights`, say) would otherwise be ignored
  without a word. Arrays whose names start with `x` are memory-mapped
  (`npyfile.npz_member`) when stored uncompressed.

  Args:
    path: the file.
    names: the arrays wanted.
    check_size: an optional callable told the bytes the compressed `x`-like
      arrays take once decompressed, before any is; it raises to refuse them.
  """
  npyfile.check_exists(path)  # is_zipfile says False for a missing file too
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
      unknown = [n for n in f.files if n not in names]
      if unknown:
        _fail(
          path,
          f'holds array(s) {", ".join(unknown)}, which linear_jax does not read; it reads '
          f'{", ".join(names)}. Save the file with those names only.',
        )
      compressed = sum(
        f.zip.getinfo(n + '.npy').file_size
        for n in names
        if n.startswith('x')
        and n in f.files
        and f.zip.getinfo(n + '.npy').compress_type != zipfile.ZIP_STORED
      )
      if compressed and check_size is not None:
        check_size(compressed)
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


def read_npy_labels(path: str) -> np.ndarray:
  """The `[N]` (or `[N, K]`) labels or targets of a `.npy`, read without pickle.

  Checked as the features are (`npyfile.open_npy`): an array of Python
  objects is refused from its header, a truncated file by its size.
  """
  y = np.array(npyfile.open_npy(path))
  if y.ndim == 0:
    _fail(path, f'not an array of labels, one per row: it holds a single value ({y.dtype}).')
  return y


DELIMITERS = (',', ';', '\t')


def detect_delimiter(lines: list[str]) -> str:
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


class ReadNotice(UserWarning):
  """Something a reader did to a file that its user should know of, said once (`warnings.warn`).

  The command line prints it as one line (`Note: ...`); from Python it is an ordinary warning.
  """


def _notice(message):
  warnings.warn(ReadNotice(message), stacklevel=3)


def _column(spec, header, width, path, what):
  if isinstance(spec, str) and not spec.lstrip('-').isdigit():
    # Names are matched stripped: in `a, b, species` the third column is 'species'.
    names = None if header is None else [h.strip() for h in header]
    spec = spec.strip()
    if names is None or spec not in names:
      _fail(path, f'no column named {spec!r}; columns: {", ".join(names or []) or "(no header)"}.')
    where = [j + 1 for j, name in enumerate(names) if name == spec]
    if len(where) > 1:
      _fail(
        path,
        f'{spec!r} names {len(where)} columns (columns {", ".join(map(str, where))}); give the {what} '
        f'column by its index (--{what}_column={where[0] - 1}, counting from 0), or rename them.',
      )
    return names.index(spec)
  col = int(spec)
  if not -width <= col < width:
    _fail(path, f'{what} column {col} is out of range for {width} columns.')
  return col % width


# A number written with a decimal comma (`3,14`, `-0,5`, `,5`, `1,5e-3`), as European spreadsheets write.
DECIMAL_COMMA = re.compile(r'\s*[+-]?(\d+,\d*|,\d+)([eE][+-]?\d+)?\s*')


def _first(rows, test, lines=None):
  """`(line, column, cell)` of the first cell of `rows` that passes `test`, counting from 1 (the file's
  line of each row: `lines`, if given); else `None`."""
  for i, r in enumerate(rows):
    for j, c in enumerate(r):
      if test(c):
        return (i + 1 if lines is None else lines[i]), j + 1, c
  return None


def number_reader(
  path: str, rows: list[list[str]], delimiter: str, lines: list[int] | None = None
) -> Callable[[str], float]:
  """How the numbers of `rows` are written: `float`, or with decimal commas (`'3,14'` -> 3.14).

  Decimal commas are read in a file whose fields are separated by `;` or tab, said once
  (`ReadNotice`); a file that also writes decimal points, or a comma inside a number of a
  comma-separated file (a decimal comma or a thousands separator: nothing tells which), is refused
  naming the cell, never read as another number. `lines`: the file's line of each row.
  """
  comma = _first(rows, lambda c: ',' in c and DECIMAL_COMMA.fullmatch(c) is not None, lines)
  if comma is None:
    return float
  line, col, cell = comma
  if delimiter == ',':
    _fail(
      path,
      f'line {line}, column {col}: {cell!r} has a comma inside a number (a decimal comma or a thousands '
      "separator?); write numbers with a decimal point and no separator, or separate the fields with ';' "
      'to read decimal commas.',
    )
  point = _first(
    rows, lambda c: '.' in c and re.fullmatch(r'\s*[+-]?[\d.,]*\d[\d.,]*([eE][+-]?\d+)?\s*', c), lines
  )
  if point is not None:
    _fail(
      path,
      f'numbers written both with decimal commas (line {line}, column {col}: {cell!r}) and with points '
      f'(line {point[0]}, column {point[1]}: {point[2]!r}); write every number one way.',
    )
  _notice(
    f'{path}: numbers are written with decimal commas (line {line}, column {col}: {cell!r}); read as such.'
  )
  return lambda c: float(c.replace(',', '.'))


def read_csv(
  path: str,
  target_column: int | str = -1,
  delimiter: str | None = None,
  weight_column: int | str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[str, ...] | None]:
  """A `.csv`, one example a row: numeric features, a target column of numbers or text labels.

  A first row with a text cell above a number names the columns. Files as spreadsheets and data
  frames write them are read as meant, or refused naming the cell, never read as other numbers:
  decimal commas (`number_reader`); a row index as first column, as pandas' `to_csv` and R's
  `write.csv` write it, is not a feature (`index_column`, said once); a header name given for
  the target that names several columns, a column of text that is not the target, and a first
  column named like a label while the target is the last (the default) are refused with the
  `--target_column` to give.

  Args:
    path: the file.
    target_column: the target column, by header name or index (the file's columns, from 0).
    delimiter: `','`, `';'` or tab; `None` detects it (`detect_delimiter`).
    weight_column: an optional column of sample weights (name or index),
      removed from the features.

  Returns:
    `(x [N, D] float64, y [N], w [N] float64 or None, names)`: `y` holds
    numbers, or strings when no cell of the target column is a number; `names`
    are the header's names of `x`'s columns (`None` without a header).

  Raises:
    ValueError: naming the file (and the line and column) for anything it cannot read as meant.
  """
  if delimiter is not None and delimiter not in DELIMITERS:
    _fail(path, f'delimiter {delimiter!r} is not one of ",", ";", tab.')
  try:
    with open(path, newline='', encoding='utf-8-sig') as f:  # a byte-order mark (Excel's CSV UTF-8) dropped
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f'{path}: cannot read as CSV ({e}).') from e
  delimiter = delimiter or detect_delimiter(text.splitlines()[:5])
  try:
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    # Each row with its line in the file (blank lines are skipped, and counted).
    numbered = [(reader.line_num, r) for r in reader if r and any(c.strip() for c in r)]
  except csv.Error as e:
    raise ValueError(f'{path}: cannot read as CSV ({e}).') from e
  if not numbered:
    _fail(path, 'no rows.')
  if all(len(r) > 1 and not r[-1].strip() for _, r in numbered):  # a delimiter ending every line
    numbered = [(n, r[:-1]) for n, r in numbered]
    _notice(f'{path}: every line ends with its delimiter; the empty column after it is no column.')
    target_column, weight_column = _as_written(target_column), _as_written(weight_column)
  lines, rows = [n for n, _ in numbered], [r for _, r in numbered]
  number = number_reader(path, rows, delimiter, lines)
  header, rows = _split_header(rows, number)
  lines = lines[1:] if header else lines
  if not rows:
    _fail(path, 'a header but no data rows.')
  width = len(header or rows[0])
  for i, r in enumerate(rows):
    if len(r) != width:
      _fail(path, f'line {lines[i]} has {len(r)} fields, expected {width}.')
  if width == 1:  # every line a target and no feature: most often read at another delimiter than its own
    _fail(
      path,
      f'every line is one field when split at {delimiter!r}, so there is no feature beside the target: is '
      'that the delimiter of the file (--delimiter; leave it out to detect it)?',
    )
  col = _column(target_column, header, width, path, 'target')
  wcol = None if weight_column in (None, '') else _column(weight_column, header, width, path, 'weight')
  if wcol == col:
    _fail(path, 'the weight column cannot also be the target column.')
  if str(target_column) == '-1':
    _label_first(path, header)
  index = index_column(path, header, rows, number, {col, wcol})
  return _values(path, header, rows, number, (col, wcol, index), lines)


def _as_written(column):
  """A column index counted from the end (−2, −3, …) on a file whose empty last column was dropped: as the
  file is written, the empty column counted. −1, the default, stays the last column that holds values."""
  try:
    k = int(column)
  except (TypeError, ValueError):
    return column
  return k + 1 if k < -1 else column


def _parses(number, cell):
  try:
    number(cell)
    return True
  except ValueError:
    return False


def _split_header(rows, number):
  """`(header or None, data rows)`: a first row with a text cell above a number names the columns."""
  if len(rows) == 1:
    return (rows[0], []) if not all(_parses(number, c) for c in rows[0]) else (None, rows)
  if any(not _parses(number, a) and _parses(number, b) for a, b in zip(rows[0], rows[1], strict=False)):
    return rows[0], rows[1:]
  return None, rows


# Header names of a first column that is a row index ('Unnamed: 0' is pandas' name for an unnamed one).
INDEX_NAMES = ('', 'unnamed: 0', 'index', 'id')
# Header names of a label column.
LABEL_NAMES = ('label', 'labels', 'class', 'target', 'y', 'species', 'category', 'diagnosis')


def index_column(path, header, rows, number, taken) -> int | None:
  """0 when the first column is a row index, not a feature; else `None`.

  A row index is what pandas' `to_csv` and R's `write.csv` write first: a column with an
  empty header (or `Unnamed: 0`, `index`, `id`) holding distinct whole numbers >= 0 (0…N−1 or
  1…N in a whole file, any of them in a sample of one). It is not used as a feature, and a
  `ReadNotice` says so once. A file without a header names no index, and keeps every column;
  a first column that is the target or the weights is not an index either.
  """
  if header is None or 0 in taken or header[0].strip().lower() not in INDEX_NAMES:
    return None
  try:
    values = np.array([number(r[0]) for r in rows])
  except ValueError:
    return None
  if not (np.all(values == np.round(values)) and values.min() >= 0 and len(np.unique(values)) == len(values)):
    return None
  name = repr(header[0]) if header[0].strip() else 'with no name'
  _notice(
    f'{path}: the first column ({name}) holds distinct whole numbers {values.min():g}…{values.max():g}, '
    'a row index as pandas and R write it, so it is not used as a feature; name it otherwise in the '
    'header to keep it.'
  )
  return 0


def _label_first(path, header):
  """Refuses a first column named like a label when the target is the last column by default."""
  if header is None or len(header) < 2:
    return
  first, last = header[0].strip(), header[-1].strip()
  if first.lower() in LABEL_NAMES and last.lower() not in LABEL_NAMES:
    _fail(
      path,
      f'the first column is named {first!r}, like a label, but the target is the last column ({last!r}) '
      f'unless --target_column names another: give --target_column={first} (or --target_column={last} '
      'to keep the last).',
    )


def _values(path, header, rows, number, columns, lines):
  """`(x, y, w, names)` of the checked rows: every column a finite number but a target of text labels.

  `columns` is `(target, weights or None, row index or None)`; `lines` the file's line of each row.
  """
  col, wcol, index = columns
  width = len(rows[0])
  targets = [r[col].strip() for r in rows]
  text_targets = not any(_parses(number, t) for t in targets)  # all text: labels; a mix: a bad number
  numbers = [j for j in range(width) if (j != col or not text_targets) and j != index]
  values = np.empty((len(rows), len(numbers)))
  for i, r in enumerate(rows):
    try:
      values[i] = [number(r[j]) for j in numbers]
    except ValueError:
      bad = next(j for j in numbers if not _parses(number, r[j]))
      hint = _text_hint(header, rows, number, bad) if bad != col else ''
      _fail(path, f'line {lines[i]}, column {bad + 1}: {r[bad]!r} is not a number{hint}.')
  if not np.all(np.isfinite(values)):  # 'nan', 'inf': parsed, and no value of a feature or a target
    i, k = (int(a[0]) for a in np.nonzero(~np.isfinite(values)))
    _fail(path, f'line {lines[i]}, column {numbers[k] + 1}: {rows[i][numbers[k]]!r} is not a finite number.')
  where = {j: k for k, j in enumerate(numbers)}
  y = np.array(targets) if text_targets else values[:, where[col]]
  w = None if wcol is None else values[:, where[wcol]]
  x = np.delete(values, [where[j] for j in (col, wcol) if j is not None and j in where], axis=1)
  if x.shape[1] == 0:
    _fail(path, 'no feature columns besides the target.')
  names = None if header is None else tuple(header[j].strip() for j in numbers if j not in (col, wcol))
  return x, y, w, names


def _text_hint(header, rows, number, j):
  """`; column 1 ('species') holds text in every row, ...`: a whole feature column of text, as labels are."""
  if any(_parses(number, r[j]) for r in rows):
    return ''
  named = header is not None and header[j].strip()
  where = f'column {j + 1} ({header[j]!r})' if named else f'column {j + 1}'
  return (
    f'; {where} holds text in every row, as labels do: if it is the target, say so with '
    f'--target_column={header[j] if named else j} (the target is the last column unless '
    '--target_column names another)'
  )
