"""Passes over large feature matrices in row blocks: statistics, finiteness, page release.

A matrix here may be an in-memory array or a read-only memory map of a file
(`.npy`, or an uncompressed member of an `.npz`). Every function reads it in
blocks of about `CHUNK_BYTES`, so no pass makes a whole-matrix temporary
(no float64 copy, no boolean mask of the whole matrix); the pages of a map
already read are handed back to the kernel (`release`), so reading a file
does not leave it resident in this process.
"""

import collections
import concurrent.futures
import itertools
import mmap
import os

import numpy as np

CHUNK_BYTES = 2**20  # a block stays in the CPU cache while several passes work on it
ALIGN = 64  # bytes: the alignment the CPU backend of XLA needs to use an array in place
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


def aligned_empty(shape, dtype, align=ALIGN):
  """An uninitialized C-ordered array whose data starts on an `align`-byte boundary.

  `jax.device_put` on the CPU takes such an array of the training dtype
  without copying it, so a split prepared this way is never copied again.
  """
  dtype = np.dtype(dtype)
  size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  buf = np.empty(size + align, np.uint8)
  start = -buf.ctypes.data % align
  return buf[start : start + size].view(dtype).reshape(shape)


def rows_per_chunk(x, chunk_bytes=None, dtype=None):
  """How many rows of `x` [N, D] make a block of about `chunk_bytes` (at least 1), counted in `dtype`
  (default: `x`'s own)."""
  itemsize = np.dtype(dtype or x.dtype).itemsize
  row_bytes = max(1, int(np.prod(x.shape[1:], dtype=np.int64)) * itemsize)
  return max(1, (chunk_bytes or CHUNK_BYTES) // row_bytes)


def blocks(n, step):
  """`(start, stop)` of consecutive row blocks of `step` rows covering `[0, n)`."""
  return [(a, min(a + step, n)) for a in range(0, n, step)]


def workers():
  """Threads for a pass over blocks: the CPUs this process may use, at most 4.

  NumPy's copies, gathers and reductions release the GIL, so blocks of one
  pass run side by side; more than a few threads only contend for memory
  bandwidth.
  """
  cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  return max(1, min(4, cpus or 1))


def in_order(fn, items, threads=None):
  """Yields `fn(item)` for each of `items` in order, computed by `threads` threads.

  At most two results per thread are computed ahead of the one yielded, so
  a consumer that stops early (an error found in a block) leaves little work
  running, and memory stays a few blocks. With one thread it is `map`.
  """
  threads = workers() if threads is None else threads
  if threads <= 1:
    yield from map(fn, items)
    return
  items = iter(items)
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    ahead = collections.deque(pool.submit(fn, item) for item in itertools.islice(items, 2 * threads))
    try:
      while ahead:
        result = ahead.popleft().result()
        ahead.extend(pool.submit(fn, item) for item in itertools.islice(items, 1))
        yield result
    finally:
      for future in ahead:
        future.cancel()


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


def _file_map(x):
  """The `np.memmap` of a file that `x` views (a mapped `.npy`, an `.npz` member), or `None`."""
  obj = x
  while obj is not None:
    if isinstance(obj, np.memmap) and getattr(obj, 'filename', None) and getattr(obj, '_mmap', None):
      return obj
    obj = getattr(obj, 'base', None)
  return None


def check_mapped(x):
  """Raises a `ValueError` naming the file if `x` views a memory map of a file now shorter than the map.

  Reading a page of a map past the end of its file kills the process with
  SIGBUS ("Fatal Python error: Bus error"), so every block read of a map
  first asks the file's size (one `stat`, a microsecond): a file truncated
  or shrunk while it is being read is then one line, not a crash. A file
  deleted while mapped stays readable and is not refused. A no-op for an
  array in memory.
  """
  m = _file_map(x)
  if m is None:
    return
  start = m.offset - m.offset % mmap.ALLOCATIONGRANULARITY  # where NumPy's map of the file begins
  needed = start + len(m._mmap)  # noqa: SLF001 - NumPy keeps the map here
  try:
    size = os.stat(m.filename).st_size
  except OSError:  # removed (its pages stay readable until unmapped) or unreadable: nothing to compare
    return
  if size < needed:
    raise ValueError(
      f'{m.filename}: the file is now {size:,} bytes, shorter than the {needed:,} it had when it was '
      'opened (truncated or replaced while it was being read); its rows cannot be read. Restore the '
      'file and run again.'
    )


def _copy_on_write(x):
  """Whether `x` views a private map (opened with `mmap_mode='c'`): its pages may hold the caller's edits."""
  obj = x
  while obj is not None:
    if isinstance(obj, np.memmap) and getattr(obj, 'mode', None) == 'c':
      return True
    obj = getattr(obj, 'base', None)
  return False


def advise(block, advice):
  """`madvise(advice)` on the pages a mapped array `block` spans (a no-op in memory).

  The span runs from the block's first byte to its last whatever its
  strides (a row block of a Fortran-ordered file spans most of the file).
  Pages are never dropped (`MADV_DONTNEED`) from a copy-on-write map, where
  they may hold the caller's changes to the data.
  """
  mm = mapping(block)
  if mm is None or not hasattr(mm, 'madvise') or block.size == 0:
    return
  if advice == mmap.MADV_DONTNEED and _copy_on_write(block):
    return
  if advice == mmap.MADV_WILLNEED and not block.flags.c_contiguous:
    return  # its span is most of the file: reading it all ahead, block after block, would thrash
  low = sum((n - 1) * s for n, s in zip(block.shape, block.strides, strict=True) if s < 0)
  high = sum((n - 1) * s for n, s in zip(block.shape, block.strides, strict=True) if s > 0) + block.itemsize
  start = block.ctypes.data - np.frombuffer(mm, np.uint8, count=1).ctypes.data + low
  first = start // mmap.PAGESIZE * mmap.PAGESIZE
  end = min(len(mm), start + high - low)
  if end > first:
    try:
      mm.madvise(advice, first, end - first)
    except (OSError, ValueError):  # advice only: the data stays correct either way
      pass


def release(block):
  """Drops the pages of a mapped `block` from this process's memory (no-op in memory).

  The file stays in the kernel's page cache; a later read maps it again.
  This keeps one pass over a memory-mapped file from adding the whole file
  to the process's resident memory.
  """
  advise(block, mmap.MADV_DONTNEED)


class ColumnStats:
  """Per-column count, mean and standard deviation, accumulated block by block in float64.

  Each block's values are shifted by a fixed per-column reference `k` (the
  first block's mean, computed in float64), summed (as are their squares)
  in the block's own precision over its few hundred rows, and the sums are
  added in float64.
  With the shift, the sums stay small when the mean is large, so the
  variance `E[(x-k)²] − E[x-k]²` keeps its precision; no float64 copy of
  more than one block is made, and blocks small enough to stay in the CPU
  cache make the extra arithmetic nearly free.
  """

  def __init__(self, num_features):
    self.n = 0
    self.k = None
    self.s1 = np.zeros(num_features)
    self.s2 = np.zeros(num_features)

  def add(self, block):
    """Adds the rows of `block` `[n, D]`; `False` if its sums are not finite (a NaN or inf in it)."""
    if len(block):
      self.set_reference(block)
    return self.merge(self.sums(block))

  def set_reference(self, block):
    """Fixes the shift `k` to the mean of `block` (a non-empty block), unless it is already set."""
    if self.k is None:
      # float64 (a big-endian file's too) and integers wider than float32 holds exactly: float64.
      wide = block.dtype.newbyteorder('=') == np.float64 or (
        block.dtype.kind in 'iu' and block.dtype.itemsize > 2
      )
      work = np.float64 if wide else np.float32  # half precision and pixels are summed in float32
      # The mean itself in float64: summed in float32 it can miss by many standard deviations
      # when the mean is large, or overflow, and the shift would then not help.
      self.k = block.mean(axis=0, dtype=np.float64).astype(work)

  def sums(self, block):
    """`(rows, Σ(x − k), Σ(x − k)²)` of `block`, or `None` if they are not finite; changes nothing.

    Safe to call from several threads once the reference is set; `merge`
    the results in block order and the statistics are the same, bit for
    bit, as `add`ing the blocks one after the other.
    """
    if len(block) == 0:
      return 0, 0.0, 0.0
    work = self.k.dtype
    out = _shifted_sums(block, self.k, work)
    if out is None and work != np.float64 and np.isfinite(block).all():
      out = _shifted_sums(block, self.k, np.float64)  # finite values too large to square in float32
    return out if out is None else (len(block), *out)

  def merge(self, sums):
    """Adds the result of `sums`; `False` (and nothing added) for `None`, a block that was not finite."""
    if sums is None:
      return False
    n, s1, s2 = sums
    self.n += n
    self.s1 += s1
    self.s2 += s2
    return True

  @property
  def mean(self):
    return self.k + self.s1 / max(self.n, 1) if self.k is not None else self.s1

  @property
  def std(self):
    """Population standard deviation (NumPy's `std` with `ddof=0`)."""
    m1 = self.s1 / max(self.n, 1)
    return np.sqrt(np.maximum(self.s2 / max(self.n, 1) - m1 * m1, 0.0))


# A column is constant when its standard deviation is at most this many float64 roundings of its mean.
CONSTANT_ULPS = 16


def constant_columns(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
  """Where a column's spread is within float64's rounding of its own mean: constant (`standard_scale`)."""
  mean, sd = np.asarray(mean, np.float64), np.asarray(sd, np.float64)
  return sd <= CONSTANT_ULPS * np.finfo(np.float64).eps * np.abs(mean)


def typical_spread(mean: np.ndarray, sd: np.ndarray) -> float:
  """The median standard deviation of the columns that vary (`constant_columns`), a float; 1 where none
  does, or where the statistics are not finite (non-finite features are refused before training)."""
  sd = np.asarray(sd, np.float64)
  varying = sd[~constant_columns(mean, sd)]
  typical = float(np.median(varying)) if varying.size else 1.0
  return typical if np.isfinite(typical) and typical > 0 else 1.0


def column_spread(x) -> float:
  """`typical_spread` of the columns of `x` `[N, D]` (an array or a memory map), one pass in blocks."""
  stats = ColumnStats(x.shape[1])
  for a, b in blocks(len(x), rows_per_chunk(x)):
    block = x[a:b]
    finite = stats.add(block)
    release(block)
    if not finite:
      return 1.0
  return typical_spread(stats.mean, stats.std) if stats.n else 1.0


def _shifted_sums(block, k, work):
  """`(Σ(x − k), Σ(x − k)²)` over the rows of `block`, computed in `work`; `None` if not finite."""
  with np.errstate(over='ignore', invalid='ignore'):  # an overflow is answered by the caller
    d = np.subtract(block, k, dtype=work)
    s1 = d.sum(axis=0, dtype=np.float64 if len(d) > 4096 else work)
    np.multiply(d, d, out=d)
    s2 = d.sum(axis=0, dtype=np.float64 if len(d) > 4096 else work)
  if not (np.isfinite(s1).all() and np.isfinite(s2).all()):
    return None
  return s1, s2


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
    check_mapped(x)
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
