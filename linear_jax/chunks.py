"""Passes over large feature matrices in row blocks: statistics, finiteness, page release.

A matrix here may be an in-memory array or a read-only memory map of a file
(`.npy`, or an uncompressed member of an `.npz`). Every function reads it in
blocks of about `CHUNK_BYTES`, so no pass makes a whole-matrix temporary
(no float64 copy, no boolean mask of the whole matrix); the pages of a map
already read are handed back to the kernel (`release`), so reading a file
does not leave it resident in this process.
"""

import mmap

import numpy as np

CHUNK_BYTES = 32 * 2**20
BFLOAT16 = None  # np.dtype of bfloat16, set on first use (it comes with JAX, through ml_dtypes)


def bfloat16():
  """The NumPy dtype of bfloat16 (`ml_dtypes`, which JAX installs)."""
  global BFLOAT16  # noqa: PLW0603 - a cache of one dtype
  if BFLOAT16 is None:
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    BFLOAT16 = np.dtype(jnp.bfloat16)
  return BFLOAT16


def is_float(dtype):
  """Whether `dtype` is a real floating type, bfloat16 included."""
  dtype = np.dtype(dtype)
  return np.issubdtype(dtype, np.floating) or dtype == bfloat16()


def rows_per_chunk(x, chunk_bytes=None):
  """How many rows of `x` [N, D] make a block of about `chunk_bytes` (at least 1)."""
  row_bytes = max(1, int(np.prod(x.shape[1:], dtype=np.int64)) * x.dtype.itemsize)
  return max(1, (chunk_bytes or CHUNK_BYTES) // row_bytes)


def blocks(n, step):
  """`(start, stop)` of consecutive row blocks of `step` rows covering `[0, n)`."""
  return [(a, min(a + step, n)) for a in range(0, n, step)]


def mapping(x):
  """The `mmap.mmap` an array is a view of, or `None` for an in-memory array."""
  obj = x
  while obj is not None:
    if isinstance(obj, mmap.mmap):
      return obj
    if isinstance(obj, np.memmap) and getattr(obj, '_mmap', None) is not None:
      return obj._mmap  # noqa: SLF001 - NumPy keeps the map here
    obj = getattr(obj, 'base', None)
  return None


def is_mapped(x):
  return mapping(x) is not None


def release(block):
  """Drops the pages of a mapped `block` from this process's memory (no-op in memory).

  The file stays in the kernel's page cache; a later read maps it again.
  This keeps one pass over a memory-mapped file from adding the whole file
  to the process's resident memory.
  """
  mm = mapping(block)
  if mm is None or not hasattr(mm, 'madvise') or block.size == 0:
    return
  base = np.frombuffer(mm, np.uint8).ctypes.data
  start = block.ctypes.data - base
  page = mmap.PAGESIZE
  first = start // page * page
  end = min(len(mm), start + block.nbytes)
  if end > first:
    mm.madvise(mmap.MADV_DONTNEED, first, end - first)


class ColumnStats:
  """Per-column count, mean, sum of squared deviations and max |x|, merged block by block.

  Accumulated in float64 with Chan et al.'s pairwise update, so the
  standard deviation keeps its precision when the mean is large, and no
  float64 copy of more than one block is ever made.
  """

  def __init__(self, num_features):
    self.n = 0
    self.mean = np.zeros(num_features)
    self.m2 = np.zeros(num_features)
    self.max_abs = 0.0

  def add(self, block):
    """Adds the rows of `block` `[n, D]` (any real dtype)."""
    if len(block) == 0:
      return
    b = np.array(block, np.float64)  # a copy of one block, never of the matrix
    n_b = len(b)
    self.max_abs = max(self.max_abs, float(np.max(np.abs(b))))
    mean_b = b.mean(axis=0)
    b -= mean_b
    m2_b = np.einsum('ij,ij->j', b, b)
    n = self.n + n_b
    delta = mean_b - self.mean
    self.mean = self.mean + delta * (n_b / n)
    self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
    self.n = n

  @property
  def std(self):
    """Population standard deviation (NumPy's `std` with `ddof=0`)."""
    return np.sqrt(self.m2 / max(self.n, 1))


def first_non_finite(block):
  """`(count, row, column, value)` of the non-finite values in `block`, or `None` if all finite."""
  ok = np.isfinite(block)
  if ok.all():
    return None
  bad = ~ok
  i, j = np.argwhere(bad)[0]
  return int(bad.sum()), int(i), int(j), block[i, j]


def check_finite(x, where, chunk_bytes=None):
  """Raises a `ValueError` naming the first non-finite value of `x` `[N, D]` by row and column.

  One pass in blocks; mapped pages are released as it goes.
  """
  count, first = 0, None
  for a, b in blocks(len(x), rows_per_chunk(x, chunk_bytes)):
    block = x[a:b]
    found = first_non_finite(block)
    release(block)
    if found:
      count += found[0]
      if first is None:
        first = (a + found[1], found[2], found[3])
  if first is not None:
    raise ValueError(
      f'{where}: {count} non-finite feature value(s); first at example {first[0]}, feature {first[1]}: '
      f'{first[2]}.'
    )
