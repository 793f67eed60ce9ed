"""Splits that live on the device: whether they fit, moving them there once, and the path over them.

`should_stream` decides between resident and streamed splits (`factory.make`
asks it); `device_data` puts every split on the device in the training dtype,
standardizing a `stream.prepare`d split there as its streamed blocks would be;
`Resident` is the data path whose compiled epoch scans the batches of those
device arrays.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.data import memory
from linear_jax.data import records
from linear_jax.datapath import base
from linear_jax.datapath import standardize
from linear_jax.datapath import stream
from linear_jax.datapath import transfer
from linear_jax.optim import gradient_norm
from linear_jax.optim import step as step_lib
from linear_jax.solvers import lbfgs as solvers

# Stream when the splits need more than this fraction of the free memory.
MEMORY_FRACTION = 0.8


def memory_budget(device=None):
  """Bytes free for the data: the accelerator's free memory, or the host's `MemAvailable` on a CPU."""
  available = memory.device_memory_available(device)
  return math.inf if available is None else available


def bytes_needed(cfg, dataset):
  """Bytes that moving the splits to the device takes beyond what they already use (bias column included).

  On the CPU a split that is already an aligned array of the training dtype
  is taken as it is (`transfer.host_array`): it costs nothing more, and the memory it
  holds is already missing from the free memory it is compared with. (Not
  under `--parallel`, which pads a copy to spread over the devices.)
  """
  dt = np.dtype(cfg.dtype)
  in_place = jax.default_backend() == 'cpu' and cfg.parallel == 'none'  # --parallel pads and spreads a copy
  total = 0
  for split in ('train', 'val', 'test'):
    x = getattr(dataset, f'x_{split}')
    if not (in_place and not cfg.bias_trick and transfer.usable_as_is(x, dt)):
      total += len(x) * (np.shape(x)[1] + cfg.bias_trick) * dt.itemsize
    total += np.asarray(getattr(dataset, f'y_{split}')).nbytes
  return total


def should_stream(cfg, dataset):
  """Whether `train.fit` streams: when asked to, for a `prepare`d dataset, or when the splits do not fit.

  With several processes only the first two decide: each process's free
  memory is its own, and every process must take the same path (their
  collectives differ). `check_fits` refuses splits a process cannot hold.
  """
  if cfg.stream or dataset.extra.get(standardize.AFFINE):
    return True
  if base.several():
    return False
  return bytes_needed(cfg, dataset) > MEMORY_FRACTION * memory_budget()


def check_fits(cfg, dataset):
  """Raises a `ValueError` (the figures, the `--stream` advice) for in-memory splits this process
  cannot hold, with several processes, where training streams only when asked (`should_stream`)."""
  if not base.several() or should_stream(cfg, dataset):
    return
  need, free = bytes_needed(cfg, dataset), memory_budget()
  if need > MEMORY_FRACTION * free:
    raise ValueError(
      f'{dataset.name}: the splits need {need / 1e9:.2f} GB in memory, but process {jax.process_index()} '
      f'has {free / 1e9:.2f} GB free; with several processes training streams only when asked: '
      'add --stream, which reads them in blocks.'
    )


def device_data(cfg, dataset, splits=('train', 'val', 'test')):
  """The `splits` as device arrays in the training dtype (with the constant-1 feature under the bias trick).

  A `prepare`d dataset (raw features, `Dataset.extra[standardize.AFFINE]`) is
  standardized here as its streamed blocks would be (`standardize.whole_split`).
  """
  dt = jnp.dtype(cfg.dtype)
  spec = cfg.loss_record
  ydt = dt if spec.targets == 'real' else jnp.int32

  def put(split):
    x = getattr(dataset, f'x_{split}')
    if dataset.extra.get(standardize.AFFINE) and len(x):  # the streamed blocks' own transform, whole
      x = standardize.whole_split(cfg, x, standardize.affine(dataset))
    else:
      # One host pass at most (cast and bias column together); an aligned array of the
      # training dtype is then taken by the CPU backend without a copy (see transfer.to_device).
      x = transfer.to_device(x, dt, cfg.bias_trick)
    return x, jnp.asarray(getattr(dataset, f'y_{split}'), ydt)

  return {s: put(s) for s in splits}


class Resident(base.Path):
  """Every split on the device, in the training dtype; the compiled epoch scans its batches."""

  data_order = 'jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)'

  def __init__(self, cfg, dataset, train_weights=None):
    super().__init__(cfg, dataset, train_weights)
    self._eval = step_lib.compiled_eval_fn(cfg)

  @functools.cached_property
  def arrays(self):
    """`{split: (x, y)}` on the device, in the training dtype (moved there on first use)."""
    return device_data(self.cfg, self.dataset)

  @staticmethod
  def _place_weights(w):
    return None if w is None else jnp.asarray(w)

  @functools.cached_property
  def _epoch(self):
    run, (x, y), w = (
      step_lib.compiled_epoch_fn(self.cfg, self.num_train),
      self.arrays['train'],
      self.weights('train'),
    )
    w_args = () if w is None else (w,)
    return lambda params, opt_state, key, hp: run(params, opt_state, x, y, key, hp, *w_args)

  def epoch(self, params, opt_state, key, hp):
    return self._epoch(params, opt_state, key, hp)

  def evaluate(self, params, hp, split):
    return records.in_target_units(
      self.dataset, self._eval(params, *self.arrays[split], hp, self.weights(split))
    )

  def resident_split(self, split):
    """`(x, y)` of one split on the device (moves that split alone)."""
    if 'arrays' in self.__dict__:
      return self.arrays[split]
    return device_data(self.cfg, self.dataset, (split,))[split]

  def objective(self, params, hp):
    x, y = self.arrays['train']
    return _value_and_grad(params, x, y, hp, self.weights('train'), structure=step_lib.structural(self.cfg))

  def grad_norm(self, params, hp):
    x, y = self.arrays['train']
    return gradient_norm.full_grad_norm(self.cfg, params, x, y, hp, self.weights('train'))

  def solver_rows(self):
    """`(x, y, w)` of the training split for a compiled solver, spread over the devices under
    `--parallel=shard_map` (`spread_rows`)."""
    x, y = self.arrays['train']
    return spread_rows(self.cfg, x, y, self.weights('train'))

  def minimize(self, params, hp, tol, max_iter, memory_size=None, on_iteration=None, should_stop=None):
    del on_iteration, should_stop  # one compiled loop: nothing runs between its iterations
    x, y, w = self.solver_rows()
    params, info = solvers.solve(self.cfg, params, x, y, hp, w, tol, max_iter, memory_size)
    return params, jax.tree.map(np.asarray, info)

  def spread_models(self, tree):
    """A sweep's arrays with a leading model axis, where its models train (here: as they are)."""
    return tree

  model_devices = 1


@functools.partial(jax.jit, static_argnames=('structure',))
def _value_and_grad(params, x, y, hp, weights, *, structure):
  """The resident split's `(f, ∇f)`: one program per `config.StepConfig` (its loss, penalty, gradient)."""
  return jax.value_and_grad(solvers.objective_fn(structure, x, y, hp, weights))(params)


def spread_rows(cfg, x, y, weights=None):
  """`(x, y, weights)` with the rows split over the devices under `--parallel=shard_map`.

  As they are otherwise (one device, or several processes). The rows are
  padded to a multiple of the device count with weight 0 (the weights are 1
  where there were none), so the weighted mean is the mean over the real
  rows; the padding is one transient copy on the first device. The solver's
  products then run where the rows are, and XLA adds the devices' sums.
  """
  where = stream.placement(cfg)
  if where is None:
    return x, y, weights
  pad = -x.shape[0] % where.devices
  w = jnp.ones(x.shape[0], x.dtype) if weights is None else weights
  padded = lambda a: jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
  return jax.device_put(tuple(padded(a) for a in (x, y, w)), where.split)
