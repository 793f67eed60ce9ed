"""Training on data larger than memory: blocks read from a memory map, sent to the device one ahead.

A split too large for host or device memory (or any split, with
`TrainConfig.stream`) is read in contiguous blocks of `block_rows` rows, for
instance from `np.load(path, mmap_mode='r', allow_pickle=False)`. One epoch of mini-batch SGD
visits the blocks in an order drawn from the epoch's key, shuffles the rows
inside each block with the block's own key, and runs the compiled steps of
in-memory training (`step.make_update`, `step.batch_plan`,
`step.scan_batches`) over the block's batches. Blocks hold a whole number of
batches, so every example is used exactly once per epoch, every batch but one
is full, and an epoch has as many steps as in memory. Full-batch descent adds
the blocks' gradients, each weighted by its share of the rows, and takes one
optimizer step (`step.make_apply`): in-memory descent up to float rounding.
L-BFGS (`solvers.fit_lbfgs`) evaluates the same sums (`make_objective_fn`),
one pass over the file per evaluation. Evaluation adds the blocks' metrics
the same way. Sample weights travel with their rows: a step descends its
batch's weighted mean, and a block's share of the full-batch objective is its
part of the split's total weight (`shares`), so the objective is
`Σ w L / Σ w`, as in memory. With several processes each reads only its own
rows (`parallel.shard_rows`) and the full-batch sums are added over processes
once per pass; mini-batch SGD runs the processes in lockstep (`Lockstep`): the
same block order, every block padded to the same rows on every device, and
every step descending the global batch made of each device's own batch, one
`psum` per step, as in-memory training over several processes does. With
`--parallel=shard_map` on one process (`placement`), the full passes of
full-batch descent and evaluation split each block's rows over the devices
of the mesh and XLA adds the devices' sums; mini-batch SGD copies each block
to every device and splits each batch over them, as in-memory data
parallelism does. Streamed L-BFGS evaluates the full passes
the same way.

While the device works on one block, the host asks the kernel to read the
next one ahead (`madvise(MADV_WILLNEED)`) and sends it (double buffering:
compiled calls return before they finish); it then waits for the block
before, whose pages it hands back (`madvise(MADV_DONTNEED)`), so at most two
blocks are resident, not the file. A block of an `.npy` map in the training
dtype is sent as it is (its rows are 64-byte aligned, and `jax.device_put` on
the CPU then reads the mapped pages without a copy); other blocks are copied
once into an aligned buffer. Features stay in the file's float dtype until
the device widens them (float16 and bfloat16 travel at half size); wider
ones (float64, wide integers) are cast in that copy, after the host has
subtracted the float64 shift (`standardize.split_affine`), so values far from zero keep
their differences.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from linear_jax.data import chunks
from linear_jax.data import datasets as data_lib
from linear_jax.data import records
from linear_jax.datapath import blocks
from linear_jax.datapath import parallel
from linear_jax.datapath import standardize
from linear_jax.datapath import transfer
from linear_jax.optim import step as step_lib

# ----------------------------------------------------------------- host side


def pass_block_rows(cfg, num_features, itemsize):
  """Rows per block of a full pass (evaluation, the full objective): `cfg.block_rows` or about 32 MiB."""
  return cfg.block_rows or max(1, transfer.DEFAULT_BLOCK_BYTES // max(1, num_features * itemsize))


def block_rows(cfg, num_rows, num_features, itemsize):
  """Rows per block: `pass_block_rows`, a multiple of the batch size for SGD."""
  rows = pass_block_rows(cfg, num_features, itemsize)
  steps, batch = step_lib.steps_per_epoch(cfg, num_rows)
  if steps > 1:
    rows = max(batch, rows // batch * batch)
  return min(rows, num_rows)


def check_features(x, where, rows=None, first_row=0, affine_=None, dtype=np.float32):
  """`validation.check_features` in blocks: no whole-array temporary, pages released as it goes.

  Raises a `ValueError` naming `where`, the number of non-finite values, and
  the row (counted from `first_row`) and column of the first; with `affine_ =
  (shift, scale)` (a `prepare`d split, standardized as it is read), also for a
  finite value whose standardization overflows `dtype` (`data.overflow_bounds`).
  """
  if np.ndim(x) != 2:
    raise ValueError(f'{where}: features must be [N, D], got shape {np.shape(x)}.')
  if x.shape[0] == 0:
    raise ValueError(f'{where}: empty batch (N = 0).')
  dt = np.dtype(x.dtype)
  if dt.name != 'bfloat16' and (not np.issubdtype(dt, np.number) or np.issubdtype(dt, np.complexfloating)):
    raise ValueError(f'{where}: features must be real numbers, got dtype {dt}.')
  rows = rows or max(1, transfer.DEFAULT_BLOCK_BYTES // max(1, x.shape[1] * dt.itemsize))
  count, first = 0, None
  bounds = None if affine_ is None else data_lib.overflow_bounds(*affine_, dtype)
  for a, b in blocks.spans(x.shape[0], rows):
    block = blocks.rows(x, a, b)
    bad = ~np.isfinite(block.astype(np.float32) if dt.name == 'bfloat16' else block)
    if bad.any():
      count += int(bad.sum())
      if first is None:
        i, j = np.argwhere(bad)[0]
        first = (first_row + a + int(i), int(j), block[i, j])
    elif bounds is not None and first is None and (found := data_lib.first_overflow(block, *bounds)):
      i, j = found
      raise data_lib.overflow_error(where, first_row + a + i, j, block[i, j], *affine_, dtype)
    blocks.release(x, a, b)
  if count:
    i, j, v = first
    raise ValueError(f'{where}: {count} non-finite feature value(s); first at example {i}, feature {j}: {v}.')


def _column_stats(x, rows):
  """`(mean, std, max |x|)` of every column of `x`, in float64, one block at a time (Chan et al.'s merge)."""
  d = x.shape[1]
  count, mean, m2, top = 0, np.zeros(d), np.zeros(d), 0.0
  for a, b in blocks.spans(x.shape[0], rows):
    block = blocks.rows(x, a, b).astype(np.float64, copy=False)
    # A non-finite value is named by the checks before training, not warned about here.
    with np.errstate(invalid='ignore', over='ignore'):
      k, bmean = b - a, block.mean(axis=0)
      delta = bmean - mean
      m2 += ((block - bmean) ** 2).sum(axis=0) + delta**2 * count * k / (count + k)
      mean += delta * k / (count + k)
    count += k
    top = max(top, float(np.abs(block).max(initial=0.0)))
    blocks.release(x, a, b)
  return mean, np.sqrt(m2 / max(count, 1)), top


def prepare(
  raw,
  name='data',
  val_fraction=0.1,
  test_fraction=0.2,
  preprocess='standardize',
  dtype=np.float32,
  class_weight=None,
):
  """A `Dataset` to stream that leaves `raw.x` (a memory map, say) where it is: nothing is copied.

  The splits are contiguous ranges of rows: training first, then validation,
  then test (unless `raw.test` gives one); shuffling would copy the file, so
  its rows should already be in random order. `'standardize'` and `'center'`
  are fitted on the training rows in float64, one block at a time, and
  applied to each block as it is read (`Dataset.extra[standardize.AFFINE]`,
  `standardize.split_affine`), so
  `train.fit` and `train.evaluate` stream such a dataset whatever its size.
  Sample weights (`raw.w`, `raw.w_test`, `class_weight='balanced'`) and real
  targets are kept as `data.prepare` keeps them, in `dtype`.
  """
  data_lib.check_prepare_args(raw, name, preprocess, class_weight, val_fraction, test_fraction, dtype=dtype)
  n_train, n_val, _ = data_lib.split_sizes(
    len(raw.x), val_fraction, test_fraction, raw.test is not None, name
  )
  x_test, y_test = raw.test if raw.test is not None else (raw.x[n_train + n_val :], raw.y[n_train + n_val :])
  x_train = raw.x[:n_train]
  shift, scale, constant, spread = _fit_affine(x_train, preprocess, raw.extra.get(data_lib.WHERE, (name,))[0])
  ydt = np.int32 if raw.kind == 'class' else np.dtype(dtype)
  ys, ws = _split_targets(raw, name, n_train, n_val, y_test, len(x_test), class_weight, dtype)
  ys, target_shift, target_scale = records.standardize_targets(ys, raw.kind, preprocess)
  file_rows = _file_rows(raw, name, n_train, n_val)
  return data_lib.Dataset(
    name=name,
    x_train=x_train,
    y_train=ys['train'].astype(ydt),
    x_val=raw.x[n_train : n_train + n_val],
    y_val=ys['val'].astype(ydt),
    x_test=x_test,
    y_test=ys['test'].astype(ydt),
    w_train=None if ws is None else ws['train'],
    w_val=None if ws is None else ws['val'],
    w_test=None if ws is None else ws['test'],
    kind=raw.kind,
    num_classes=raw.num_classes,
    shift=shift,
    scale=scale,
    target_shift=target_shift,
    target_scale=target_scale,
    feature_spread=spread,
    image_shape=raw.image_shape,
    class_names=raw.class_names,
    # How the checks before training name a split's rows: their file, and the file's row numbers.
    extra={
      **raw.extra,
      standardize.AFFINE: preprocess != 'none',
      standardize.FILE_ROWS: file_rows,
      **({data_lib.CONSTANT: constant} if constant else {}),
    },
  )


def _fit_affine(x_train, preprocess, name):
  """`(shift, scale, constant, spread)` of `preprocess` fitted on the `[n, D]` training rows.

  `shift`, `scale`: `[D]` float64 (`data.standard_scale`, the rule of data in
  memory); `constant`: the indices of the constant columns; `spread`: the
  median spread of the varying columns as training sees them (1 once
  standardized; `Dataset.feature_spread`). One pass over the rows, whatever
  `preprocess`.
  """
  d = x_train.shape[1]
  shift, scale, constant = np.zeros(d), np.ones(d), ()
  rows = max(1, transfer.DEFAULT_BLOCK_BYTES // max(1, d * 8))
  mean, sd, _ = _column_stats(x_train, rows)
  spread = 1.0 if preprocess == 'standardize' else chunks.typical_spread(mean, sd)
  if preprocess in ('standardize', 'center'):
    shift = mean
  if preprocess == 'standardize':
    scale = data_lib.standard_scale(shift, sd, name)
    constant = tuple(int(j) for j in np.flatnonzero(chunks.constant_columns(shift, sd)))
  if not standardize.host_shift(x_train, np.float32):
    # Rows that reach float32 exactly are shifted on the device, in float32 when training is: the
    # dataset records the shift subtracted, so that `params_to_raw` undoes exactly what was done.
    shift = shift.astype(np.float32).astype(np.float64)
  return shift, scale, constant, spread


def _split_targets(raw, name, n_train, n_val, y_test, num_test, class_weight, dtype):
  """`(ys, ws)`: each split's `[n_split]` targets and sample weights (`data.split_weights`: or `None`)."""
  n = raw.x.shape[0]
  ys = {
    'train': np.asarray(raw.y[:n_train]),
    'val': np.asarray(raw.y[n_train : n_train + n_val]),
    'test': np.asarray(y_test),
  }
  if raw.kind == 'class':
    _check_classes_in_training(ys, name, raw.test is not None)
  test_rows = np.arange(num_test) if raw.test is not None else np.arange(n_train + n_val, n)
  rows = {'train': np.arange(n_train), 'val': np.arange(n_train, n_train + n_val), 'test': test_rows}
  ws = data_lib.split_weights(raw, rows, ys, None if class_weight == 'none' else class_weight, dtype, name)
  return ys, ws


def _file_rows(raw, name, n_train, n_val):
  """`{split: (file, first row)}`: where each split's rows are, for errors that name a row."""
  where, test_where = raw.extra.get(data_lib.WHERE, (name, f'{name} (test)'))
  return {
    'train': (where, 0),
    'val': (where, n_train),
    'test': (test_where, 0) if raw.test is not None else (where, n_train + n_val),
  }


# A class of the training rows missing from a held-out range of the file is refused when rows in
# random order would leave it out less often than this.
SORTED_CHANCE = 1e-9


def _check_classes_in_training(ys, name, test_given):
  """Refuses contiguous splits whose classes say the file's rows are sorted by label.

  Either a validation or test range holds a class the training range lacks
  (the model would never see it), or a validation or test range of the file
  lacks a class that is so common in training that rows in random order
  would leave it out with a chance below `SORTED_CHANCE` (the accuracy of
  that range would say nothing of the class). A test file of its own may
  hold any classes the training rows have.
  """
  classes, counts = np.unique(ys['train'], return_counts=True)
  seen = set(classes.tolist())
  for split in ('val', 'test'):
    own_file = split == 'test' and test_given
    where = 'the test file' if own_file else f'the {split} rows'.replace('val', 'validation')
    present = set(np.unique(ys[split]).tolist())
    unseen = sorted(present - seen)
    if unseen:
      why = f'class {unseen[0]} occurs in {where} but never in the {len(ys["train"])} training rows'
    else:
      share = {c: k / len(ys['train']) for c, k in zip(classes.tolist(), counts.tolist(), strict=True)}
      missing = [c for c in share if c not in present and (1 - share[c]) ** len(ys[split]) < SORTED_CHANCE]
      if own_file or not missing:
        continue
      why = (
        f'class {missing[0]}, {share[missing[0]]:.0%} of the training rows, never occurs in {where} '
        f'({len(ys[split])} of them; rows in random order would leave it out with a chance below '
        f'{SORTED_CHANCE:g})'
      )
    raise ValueError(
      f'{name}: streaming takes contiguous splits (training rows first, then validation, then test), and '
      f'{why}: the rows look sorted by label. Shuffle the file once (x[p], y[p] for a permutation p), or '
      'train without --stream.'
    )


def check_config(cfg):
  """Raises a `ValueError` for what streaming cannot do."""
  several = jax.process_count() > 1
  mini_batch = cfg.batch_size not in (0, None) and cfg.optimizer != 'lbfgs'  # L-BFGS is full-batch
  if several and mini_batch and cfg.num_devices not in (0, jax.device_count()):
    raise ValueError(
      f'--num_devices={cfg.num_devices}: streamed mini-batch SGD over several processes runs on every '
      f'device of every process ({jax.device_count()}); drop --num_devices.'
    )
  if not several and cfg.parallel == 'pmap':
    raise ValueError(
      '--parallel=pmap does not stream; with --stream (or data larger than memory) use '
      '--parallel=shard_map, which splits each block over the devices.'
    )


class Placement(NamedTuple):
  """Where streamed blocks go on a mesh: `split` (rows over the devices) and `everywhere` (replicated)."""

  split: NamedSharding
  everywhere: NamedSharding

  @property
  def devices(self):
    return self.everywhere.mesh.size

  def of(self, rows):
    """The sharding of a block of `rows` rows: split if they divide evenly over the devices."""
    return self.split if rows % self.devices == 0 else self.everywhere

  def spans(self, num_rows, rows):
    """`blocks.spans` of blocks of about `rows` rows whose rows divide evenly over the devices.

    `rows` is rounded down to a multiple of the device count (at least one
    row each), and the last block is cut in two: the rows that divide evenly,
    split over the devices, and the rest, fewer than the devices, copied to
    every device. So a split of any size is spread over the devices, not
    only one whose row count is a multiple of theirs.
    """
    out = blocks.spans(num_rows, max(self.devices, rows // self.devices * self.devices))
    if out:
      a, b = out[-1]
      cut = a + (b - a) // self.devices * self.devices
      if a < cut < b:
        out[-1:] = [(a, cut), (cut, b)]
    return out

  def replicate(self, tree):
    return jax.device_put(tree, self.everywhere)

  def put(self, block, k):
    """Block `k` of a pass on the mesh: `of(len(block))`."""
    del k
    return jax.device_put(block, self.of(len(block)))


class Lockstep(NamedTuple):
  """Streamed mini-batch SGD over several processes: the same blocks, in the same order, everywhere.

  Every process cuts its own rows (`local_rows`) into as many blocks as
  process 0, which holds the most; block `k` of a process is its part of
  those rows (possibly short or empty) and is padded, with weight 0, to
  `device_rows[k]` rows on each of the process's `local_devices` devices, so
  every device of the global `mesh` holds a block of the same shape and runs
  the same number of steps (`_lockstep_block`).
  """

  mesh: jax.sharding.Mesh
  local_devices: int
  device_rows: tuple

  def put(self, block, k):
    """Block `k` (this process's rows), zero-padded, as a global array split by rows over the mesh."""
    pad = self.device_rows[k] * self.local_devices - len(block)
    if pad:
      block = np.pad(block, [(0, pad)] + [(0, 0)] * (block.ndim - 1))
    return jax.make_array_from_process_local_data(NamedSharding(self.mesh, P(parallel.AXIS)), block)

  def replicate(self, tree):
    """`tree` (the same on every process) as global arrays held whole by every device."""
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    return multihost_utils.host_local_array_to_global_array(tree, self.mesh, P())

  def ordered(self, order):
    """The same blocks taken in `order`."""
    return self._replace(device_rows=tuple(self.device_rows[k] for k in order))


def lockstep_spans(num_rows, rows, index=None, count=None):
  """`(sizes, spans)` of `Lockstep` blocks of `rows` rows for process `index` of `count`.

  Process 0 holds the most rows (`parallel.shard_rows`), so its blocks set
  the count and the `sizes` for every process; `spans` are this process's
  rows of each (indices into its own rows; the rows past its own make an
  empty block).
  """
  first = parallel.shard_rows(num_rows, 0, count)
  mine = parallel.shard_rows(num_rows, index, count)
  own = mine.stop - mine.start
  common = blocks.spans(first.stop - first.start, rows)
  return [b - a for a, b in common], [(min(a, own), min(b, own)) for a, b in common]


def lockstep(num_rows, rows):
  """`(Lockstep, this process's block spans)` for SGD over every process in blocks of `rows` rows."""
  mesh = parallel.make_mesh()
  local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
  if local_devices * jax.process_count() != mesh.size:
    raise ValueError(
      f'streamed mini-batch SGD over several processes needs as many devices on each: this process has '
      f'{local_devices} of {mesh.size} over {jax.process_count()} processes.'
    )
  sizes, mine = lockstep_spans(num_rows, rows)
  return Lockstep(mesh, local_devices, tuple(math.ceil(r / local_devices) for r in sizes)), mine


def placement(cfg, split=True):
  """Where a streamed block goes: `None` (the default device), or a `Placement` on the mesh.

  With `--parallel=shard_map` on one process. Full passes (`split`): a block
  whose rows divide evenly over the devices is split by rows (`P('data')`),
  and the rest of the last block, fewer rows than devices
  (`Placement.spans`), is copied to every device; the parameters are
  replicated, so a block's sums are computed where its rows are and added by
  XLA, the same numbers as on one device up to the order of the additions.
  Mini-batch SGD (`split=False`): every block is copied to every device, and
  each device takes its slice of each batch (`_block_shard_map`).
  """
  if cfg.parallel != 'shard_map' or jax.process_count() > 1:
    return None
  mesh = parallel.make_mesh(cfg.num_devices)
  everywhere = NamedSharding(mesh, P())
  return Placement(NamedSharding(mesh, P(parallel.AXIS)) if split else everywhere, everywhere)


def local_rows(num_rows):
  """The rows this process reads, a `slice`: all alone, its `parallel.shard_rows` share with others."""
  if jax.process_count() == 1:
    return slice(0, num_rows)
  return parallel.shard_rows(num_rows)


def sum_over_processes(tree):
  """The sum of `tree` over every process (itself with one process): one small transfer."""
  if jax.process_count() == 1:
    return tree
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  return jax.tree.map(lambda a: jnp.asarray(np.sum(a, axis=0)), multihost_utils.process_allgather(tree))


def host_splits(cfg, dataset):
  """`{split: (x, y)}` left on the host: `x` as it is (a memory map stays one), `y` in the target dtype."""
  spec = cfg.loss_record
  ydt = np.dtype(cfg.dtype) if spec.targets == 'real' else np.int32
  return {
    s: (getattr(dataset, f'x_{s}'), np.asarray(getattr(dataset, f'y_{s}'), ydt))
    for s in ('train', 'val', 'test')
  }


def pipeline(step, state, x, y, block_spans, dtype, w=None, where=None, shift=None):
  """`state = step(state, k, x_block, y_block, w_block)` over the blocks, each next block read ahead.

  `x_block` is read in `dtype`, less `shift` when given (`standardize.split_affine`).

  `w` (`[N]` sample weights on the host, or `None`) travels with `x` and `y`:
  `w_block` is its rows of the block on the device, or `None` without weights.
  `where` (a `Placement` from `placement`, or a `Lockstep`) puts block `k`
  where it goes (`where.put(block, k)`): split over a mesh's devices, or
  padded into a global array over several processes.

  Compiled calls return before they finish, so while block `k` computes the
  host asks the kernel to read block `k + 1` ahead, waits for block `k − 1`
  and hands its pages back, then sends block `k + 1` (double buffering): at
  most two blocks are alive, whatever the speeds of disk and device.

  Returns the final `state`, computed.
  """
  if not block_spans:  # a process with no rows of its own
    return state

  def put(k):
    a, b = block_spans[k]
    to = jax.device_put if where is None else lambda block: where.put(block, k)
    wb = None if w is None else to(blocks.rows(w, a, b))
    return to(transfer.read(x, a, b, dtype, shift)), to(blocks.rows(y, a, b)), wb

  blocks.prefetch(x, *block_spans[0])
  pending, current = None, put(0)
  for k, span in enumerate(block_spans):
    state = step(state, k, *current)
    if k + 1 < len(block_spans):
      blocks.prefetch(x, *block_spans[k + 1])
    if pending is not None:
      jax.block_until_ready(pending[0])
      blocks.release(x, *pending[1])
    pending = (state, span)
    current = put(k + 1) if k + 1 < len(block_spans) else None
  jax.block_until_ready(state)
  blocks.release(x, *pending[1])
  return state


def shares(block_spans, num_rows, w=None, offset=0):
  """Each block's share of the split's mean: `[(Σ w of the block) / (Σ w of the split), ...]`.

  `block_spans` index the rows from `offset` on (a process's own rows start
  there); `w` holds the whole split's `num_rows` sample weights, or is `None`,
  and then a block's share is its rows over `num_rows`. The blocks' means
  (`Σ w L / Σ w` inside each block) added with these shares make the split's
  mean `Σ w L / Σ w`, the objective in memory.
  """
  if w is None:
    return [(b - a) / num_rows for a, b in block_spans]
  w = np.asarray(w, np.float64)
  total = float(w.sum())
  return [float(w[offset + a : offset + b].sum()) / total if total > 0 else 0.0 for a, b in block_spans]


# ----------------------------------------------------------------- device side


def block_plan(key, rows, batch):
  """`(steps, idx [steps, batch], mask [steps, batch])` of one block of `rows` rows: `step.batch_plan`."""
  steps = math.ceil(rows / batch)
  idx, mask = step_lib.batch_plan(key, rows, steps, batch, jnp.float32)
  return steps, idx, mask


@functools.partial(jax.jit, static_argnames=('structure', 'rows', 'batch', 'steps_per_epoch'))
def _block(params, opt_state, xb, yb, wb, key, hp, affine_, *, structure, rows, batch, steps_per_epoch):
  """SGD over one block of `rows` rows: `(params, opt_state, step_objectives)`.

  With the block's sample weights `wb` (`[rows]`, else `None`) each row's mask
  is multiplied by its weight, so every step descends its batch's weighted
  mean, as in memory (`step.make_epoch_fn`). One program per
  `config.StepConfig`, block shape and weighting; new hyperparameter values
  never recompile.
  """
  steps = math.ceil(rows / batch)
  update = step_lib.make_update(structure, steps_per_epoch, masked=wb is not None or steps * batch != rows)
  xb = standardize.widen(structure, xb, affine_)
  idx, mask = step_lib.batch_plan(key, rows, steps, batch, xb.dtype)
  if wb is not None:
    mask = mask * wb.astype(xb.dtype)[idx]
  return step_lib.scan_batches(update, params, opt_state, xb, yb, idx, mask, hp)


@functools.partial(jax.jit, static_argnames=('structure', 'rows', 'batch', 'steps_per_epoch', 'num_devices'))
def _block_shard_map(
  params, opt_state, xb, yb, wb, key, hp, affine_, *, structure, rows, batch, steps_per_epoch, num_devices
):
  """`_block` on the devices of a mesh, the block copied to each: the same steps, each batch split.

  Every device draws the block's batch plan from the same key, takes its
  slice of each batch (`parallel.device_slice`), and the step descends the
  batch's weighted mean added over the devices (`parallel.global_mean_step`):
  single-device streamed SGD up to the order of the additions.
  """
  steps = math.ceil(rows / batch)
  update = parallel.global_mean_step(structure, steps_per_epoch)

  def body(params, opt_state, xb, yb, wb, key, hp, affine_):
    xb = standardize.widen(structure, xb, affine_)
    idx, mask = step_lib.batch_plan(key, rows, steps, batch, xb.dtype)
    if wb is not None:
      mask = mask * wb.astype(xb.dtype)[idx]
    idx, mask = parallel.device_slice(idx, mask, num_devices)
    return step_lib.scan_batches(update, params, opt_state, xb, yb, idx, mask, hp)

  return jax.shard_map(
    body, mesh=parallel.make_mesh(num_devices), in_specs=(P(),) * 8, out_specs=(P(), P(), P())
  )(params, opt_state, xb, yb, wb, key, hp, affine_)


@functools.partial(jax.jit, static_argnames=('structure', 'device_rows', 'steps_per_epoch'))
def _lockstep_block(
  params, opt_state, xb, yb, wb, key, hp, affine_, *, structure, device_rows, steps_per_epoch
):
  """SGD over one `Lockstep` block on every device of every process: `(params, opt_state, step_objectives)`.

  `xb, yb, wb` are global arrays split by rows, `device_rows` rows on each
  device (padding weighs 0 in `wb`); the rest is replicated. Each device
  shuffles its own rows with its own key and takes `⌈batch / devices⌉` of
  them per step (`parallel.device_plan`, the layout of in-memory training
  over several processes), and every step descends the weighted mean of the
  union of the devices' batches (`parallel.global_mean_step`, one `psum`).
  """
  mesh = parallel.make_mesh()
  _, _, plan = parallel.device_plan(structure, device_rows, mesh.size, sharded=True)
  update = parallel.global_mean_step(structure, steps_per_epoch)

  def body(params, opt_state, xb, yb, wb, key, hp, affine_):
    xb = standardize.widen(structure, xb, affine_)
    idx, mask = plan(key, wb.astype(xb.dtype))
    return step_lib.scan_batches(update, params, opt_state, xb, yb, idx, mask, hp)

  rows = P(parallel.AXIS)
  return jax.shard_map(
    body, mesh=mesh, in_specs=(P(), P(), rows, rows, rows, P(), P(), P()), out_specs=(P(), P(), P())
  )(params, opt_state, xb, yb, wb, key, hp, affine_)


@functools.partial(jax.jit, static_argnames=('structure',))
def _accumulate_grad(total, params, xb, yb, wb, share, hp, affine_, *, structure):
  """`total + share · (objective, gradient)` on one block (its weighted mean with weights `wb`)."""
  xb = standardize.widen(structure, xb, affine_)
  mask = None if wb is None else wb.astype(xb.dtype)
  value, g = step_lib.batch_value_and_grad(structure, params, xb, yb, mask, hp)
  return jax.tree.map(lambda t, v: t + share * v, total, (value, g))


@functools.partial(jax.jit, static_argnames=('structure',))
def _apply(params, opt_state, grad, hp, *, structure):
  """One optimizer step along `grad`: `step.make_apply(structure, 1)`."""
  return step_lib.make_apply(structure, 1)(params, opt_state, grad, hp)


@functools.partial(jax.jit, static_argnames=('structure',))
def _accumulate_eval(total, params, xb, yb, wb, row_share, weight_share, hp, affine_, *, structure):
  """`total + share · metrics` on one block.

  The objective is the block's weighted mean (weights `wb`) and takes
  `weight_share`; MSE and MAE stay unweighted, as in memory, and take
  `row_share`. Accuracy adds the block's count of right rows (`make_eval_fn`
  divides by the rows at the end): shares added in float32 made 1.0000004 of
  thirty right rows.
  """
  xb = standardize.widen(structure, xb, affine_)
  out = step_lib.make_eval_fn(structure)(params, xb, yb, hp, None if wb is None else wb.astype(xb.dtype))
  share = lambda k: weight_share if k == 'loss' else row_share
  return {
    k: total[k] + (jnp.round(v * xb.shape[0]) if k == 'accuracy' else share(k) * v) for k, v in out.items()
  }


def block_order(key, num_blocks):
  """`(block order [num_blocks], key of the rows inside the blocks)` of one epoch."""
  order_key, rows_key = jax.random.split(key)
  return np.asarray(jax.random.permutation(order_key, num_blocks)), rows_key


def epoch_order(cfg, key, num_rows, num_features=1, itemsize=4):
  """The rows one streamed SGD epoch visits, in order (`[num_rows]`; padding left out).

  Computed from the same keys and plans as `make_epoch_fn` uses on one
  process, so tests can check the order statistics of what training actually
  does (several processes shuffle each device's rows of a block instead: `Lockstep`).
  """
  rows = block_rows(cfg, num_rows, num_features, itemsize)
  _, batch = step_lib.steps_per_epoch(cfg, num_rows)
  block_spans = blocks.spans(num_rows, rows)
  order, rows_key = block_order(key, len(block_spans))
  out = []
  for k in order:
    a, b = block_spans[k]
    _, idx, mask = block_plan(jax.random.fold_in(rows_key, int(k)), b - a, batch)
    out.append(a + np.asarray(idx)[np.asarray(mask) > 0])
  return np.concatenate(out)


def make_objective_fn(cfg, x, y, affine_=None, w=None):
  """The full training objective and its gradient, streamed over `x, y`: `(params, hp) -> (f, ∇f)`.

  `f = Σ_k s_k · f_k`, each block's objective and gradient
  (`step.batch_value_and_grad`, its weighted mean with weights) counted with
  its share `s_k` of the split (`shares`: of the rows, or of the total sample
  weight), added over the blocks (`pipeline`) and, with several processes each
  reading only its own rows (`local_rows`), over processes
  (`sum_over_processes`): the in-memory `(f, ∇f)` up to float rounding, in
  the training dtype. Every call is one full pass over the file; full-batch
  descent takes one per epoch, streamed L-BFGS one per evaluation
  (`solvers.fit_lbfgs`).

  Args:
    cfg: a `TrainConfig` (loss, penalty, grad, dtype, bias trick, `block_rows`).
    x, y: the training split on the host (an array or a memory map).
    affine_: `(shift, scale)` to standardize each block with (`standardize.affine`), or `None`.
    w: `[N]` sample weights of the split on the host, or `None`.
  """
  num_rows = x.shape[0]
  shift, affine_ = standardize.split_affine(cfg, x, affine_)
  dt = blocks.transfer_dtype(x, cfg.dtype)
  where = placement(cfg)
  rows = pass_block_rows(cfg, x.shape[1], dt.itemsize)
  mine = local_rows(num_rows)
  x_local, y_local = x[mine], y[mine]
  w_local = None if w is None else np.asarray(w, jnp.dtype(cfg.dtype))[mine]
  local = x_local.shape[0]
  local_spans = blocks.spans(local, rows) if where is None else where.spans(local, rows)
  block_shares = shares(local_spans, num_rows, w, offset=mine.start)
  scfg = step_lib.structural(cfg)

  def value_and_grad(params, hp):
    if where is not None:
      params, hp = where.replicate((params, hp))
    weights = [jnp.asarray(share, params.W.dtype) for share in block_shares]
    step = lambda total, k, xb, yb, wb: _accumulate_grad(
      total, params, xb, yb, wb, weights[k], hp, affine_, structure=scfg
    )
    zero = (jnp.zeros((), params.W.dtype), jax.tree.map(jnp.zeros_like, params))
    zero = zero if where is None else where.replicate(zero)
    return sum_over_processes(pipeline(step, zero, x_local, y_local, local_spans, dt, w_local, where, shift))

  return value_and_grad


def make_epoch_fn(cfg, x, y, affine_=None, w=None):
  """A streamed epoch over `x, y` (host arrays or memory maps) with `train`'s epoch signature.

  `affine_`: `(shift, scale)` to standardize each block with (`standardize.affine`), or `None`.
  `w`: `[N]` sample weights on the host, or `None`; the blocks take their rows
  of it, and every step descends its batch's weighted mean (full batch: the
  split's `Σ w L / Σ w`), as in memory.

  Returns `(params, opt_state, _x, _y, key, hp[, _w]) -> (params, opt_state, step_objectives)`;
  the `_x, _y, _w` it is called with are ignored (they are `x, y, w` themselves in `train.fit`).
  """
  num_rows = x.shape[0]
  dt = blocks.transfer_dtype(x, cfg.dtype)
  rows = block_rows(cfg, num_rows, x.shape[1], dt.itemsize)
  block_spans = blocks.spans(num_rows, rows)
  steps, batch = step_lib.steps_per_epoch(cfg, num_rows)
  scfg = step_lib.structural(cfg)
  if w is not None:
    w = np.asarray(w, jnp.dtype(cfg.dtype))

  if steps == 1:  # full batch: one step along the share-weighted sum of the blocks' gradients
    objective = make_objective_fn(cfg, x, y, affine_, w)
    where = placement(cfg)

    def full_batch_epoch(params, opt_state, _x, _y, key, hp, _w=None):
      del key
      value, grad = objective(params, hp)
      if where is not None:
        params, opt_state, hp = where.replicate((params, opt_state, hp))
      params, opt_state = _apply(params, opt_state, grad, hp, structure=scfg)
      return params, opt_state, value[None]

    return full_batch_epoch

  if jax.process_count() > 1:  # every process its own rows, in lockstep
    return _lockstep_epoch(cfg, x, y, affine_, w, rows)
  shift, affine_ = standardize.split_affine(cfg, x, affine_)
  where = placement(cfg, split=False)  # --parallel=shard_map: each block on every device
  block_fn = _block if where is None else functools.partial(_block_shard_map, num_devices=where.devices)

  def epoch(params, opt_state, _x, _y, key, hp, _w=None):
    order, rows_key = block_order(key, len(block_spans))
    ordered = [block_spans[k] for k in order]
    if where is not None:
      params, opt_state, hp = where.replicate((params, opt_state, hp))

    def step(state, i, xb, yb, wb):
      params, opt_state, values = state
      a, b = ordered[i]
      key_i = jax.random.fold_in(rows_key, int(order[i]))
      params, opt_state, v = block_fn(
        params,
        opt_state,
        xb,
        yb,
        wb,
        key_i,
        hp,
        affine_,
        structure=scfg,
        rows=b - a,
        batch=batch,
        steps_per_epoch=steps,
      )
      return params, opt_state, (*values, v)

    params, opt_state, values = pipeline(step, (params, opt_state, ()), x, y, ordered, dt, w, where, shift)
    return params, opt_state, jnp.concatenate(values)

  return epoch


def _lockstep_epoch(cfg, x, y, affine_, w, rows):
  """`make_epoch_fn`'s mini-batch epoch over several processes, each streaming its own rows (`Lockstep`).

  Every process draws the same block order from the epoch's key and the
  same key for each block; the parameters come back as this process's own
  arrays, so the rest of `train.fit` runs as it does on one process. The
  optimizer's schedule counts the steps the devices' plans take
  (`parallel.device_plan`), as in-memory training over several processes does.
  """
  num_rows = x.shape[0]
  dt = blocks.transfer_dtype(x, cfg.dtype)
  lock, local_spans = lockstep(num_rows, rows)
  mine = local_rows(num_rows)
  x, y = x[mine], y[mine]
  w = np.ones(mine.stop - mine.start, jnp.dtype(cfg.dtype)) if w is None else w[mine]  # padding weighs 0
  scfg = step_lib.structural(cfg)
  steps = sum(parallel.device_plan(scfg, r, lock.mesh.size, sharded=True)[0] for r in lock.device_rows)
  shift, affine_ = standardize.split_affine(cfg, x, affine_)
  shift_scale = lock.replicate(affine_)
  local = lambda tree: jax.tree.map(lambda a: a.addressable_data(0), tree)

  def epoch(params, opt_state, _x, _y, key, hp, _w=None):
    order, rows_key = block_order(key, len(local_spans))
    where = lock.ordered(order)
    params, opt_state, hp = lock.replicate((params, opt_state, hp))

    def step(state, i, xb, yb, wb):
      params, opt_state, values = state
      key_i = lock.replicate(jax.random.fold_in(rows_key, int(order[i])))
      params, opt_state, v = _lockstep_block(
        params,
        opt_state,
        xb,
        yb,
        wb,
        key_i,
        hp,
        shift_scale,
        structure=scfg,
        device_rows=where.device_rows[i],
        steps_per_epoch=steps,
      )
      return params, opt_state, (*values, v)

    ordered = [local_spans[k] for k in order]
    params, opt_state, values = pipeline(step, (params, opt_state, ()), x, y, ordered, dt, w, where, shift)
    return (*local((params, opt_state)), jnp.concatenate([local(v) for v in values]))

  return epoch


def make_eval_fn(cfg, affine_=None):
  """A streamed `step.make_eval_fn`: `(params, x, y, hp, w=None) -> dict`, the blocks' metrics added.

  `affine_`: `(shift, scale)` to standardize each block with (`standardize.affine`), or `None`.

  Each block's objective counts with its share of the split's sample weights
  `w` (`[N]` on the host; its rows without them), so the objective is
  `Σ w L / Σ w`; accuracy, MSE and MAE count rows, as in memory.
  """
  scfg = step_lib.structural(cfg)
  where = placement(cfg)

  def evaluate(params, x, y, hp, w=None):
    num_rows = x.shape[0]
    dt = blocks.transfer_dtype(x, cfg.dtype)
    shift, on_device = standardize.split_affine(cfg, x, affine_)
    rows = pass_block_rows(cfg, x.shape[1], dt.itemsize)
    if where is not None:
      params, hp = where.replicate((params, hp))
    mine = local_rows(num_rows)  # several processes: each its own rows, the sums added up
    x, y = x[mine], y[mine]
    w = None if w is None else np.asarray(w, jnp.dtype(cfg.dtype))
    block_spans = blocks.spans(x.shape[0], rows) if where is None else where.spans(x.shape[0], rows)
    as_array = lambda v: jnp.asarray(v, params.W.dtype)
    row_shares = [as_array(v) for v in shares(block_spans, num_rows)]
    weight_shares = [as_array(v) for v in shares(block_spans, num_rows, w, offset=mine.start)]
    names = jax.eval_shape(
      lambda p, xb, yb: step_lib.make_eval_fn(scfg)(p, standardize.widen(scfg, xb), yb, hp),
      params,
      jax.ShapeDtypeStruct((1, x.shape[1]), dt),
      jax.ShapeDtypeStruct((1, *y.shape[1:]), y.dtype),
    )
    zero = {k: jnp.zeros(v.shape, params.W.dtype) for k, v in names.items()}  # [K] per output: MSE, MAE
    zero = zero if where is None else where.replicate(zero)
    step = lambda total, k, xb, yb, wb: _accumulate_eval(
      total, params, xb, yb, wb, row_shares[k], weight_shares[k], hp, on_device, structure=scfg
    )
    w_local = None if w is None else w[mine]
    total = sum_over_processes(pipeline(step, zero, x, y, block_spans, dt, w_local, where, shift))
    if 'accuracy' in total:  # the right rows counted, over all rows: as exact as in memory
      total['accuracy'] = total['accuracy'] / num_rows
    return total

  return evaluate
