"""Data parallelism over devices and hosts: meshes, shard_map and pmap epochs, sharded sweeps.

Every device computes the loss and gradient *sums* over its rows of the batch
(per-example work written once and batched, as in `grads.py`); one `psum`
over the `'data'` axis adds them, and dividing by the global count of real
rows gives exactly the single-device mean, padded rows included at weight 0.
With sample weights the sums and the count are weighted (`Σ w L`, `Σ w`), so
the quotient is the single-device weighted mean `Σ w L / Σ w`.
The optimizer step then runs replicated, so parameters stay identical on
every device.

Two data layouts:

* replicated (one host): every device holds the whole training set and takes
  its slice of each global batch from the same shuffle as single-device
  training, so the result equals `train.fit` to float tolerance, whatever
  the device count (a batch that does not divide it is padded and masked);
* sharded (several hosts): each process holds only its shard; each device
  shuffles its own rows and a global batch is the union of the devices'
  local batches. Full-batch descent is then exactly single-device descent.
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

from linear_jax.maths import grad_sources
from linear_jax.maths import grads
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.optim import config
from linear_jax.optim import step as step_lib

AXIS = 'data'
PARALLEL = config.PARALLEL


def make_mesh(num_devices=0):
  """A 1-D mesh named `'data'` over the first `num_devices` devices (0: all, every host)."""
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise ValueError(f'num_devices={num_devices} but only {len(devices)} device(s) are visible.')
    devices = devices[:num_devices]
  return Mesh(np.array(devices), (AXIS,))


def initialize(coordinator_address=None, num_processes=None, process_id=None):
  """Starts JAX's multi-process runtime (`jax.distributed.initialize`).

  With no arguments JAX detects the cluster (Slurm, Open MPI, TPU pods);
  otherwise all three say where process 0 listens, how many processes there
  are and which one this is.
  """
  given = [coordinator_address is not None, num_processes is not None, process_id is not None]
  if any(given) and not all(given):
    raise ValueError('coordinator_address, num_processes and process_id go together: give all three or none.')
  if all(given):
    if not 0 <= process_id < num_processes:
      raise ValueError(f'process_id={process_id} must be in [0, num_processes={num_processes}).')
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  else:
    jax.distributed.initialize()


def shard_rows(num_rows, index=None, count=None):
  """The contiguous `slice` of `num_rows` that process `index` of `count` reads."""
  index = jax.process_index() if index is None else index
  count = jax.process_count() if count is None else count
  per = math.ceil(num_rows / count)
  return slice(min(index * per, num_rows), min((index + 1) * per, num_rows))


def _penalty_value_and_grad(cfg, params, reg):
  w = model.penalized_weights(params)
  value = reg * losses.PENALTIES[cfg.penalty](w)
  if cfg.grad == 'analytic':
    g = model.Params(W=grads.penalty_grad(params, cfg.penalty, reg), b=None)
  else:
    g = jax.grad(lambda p: reg * losses.PENALTIES[cfg.penalty](model.penalized_weights(p)))(params)
  return value, g


def global_mean_step(cfg, steps):
  """One optimizer step on a batch spread over the `'data'` axis (`step.make_update`'s signature)."""
  optimizer = step_lib.make_optimizer(cfg, None, steps)

  def step(params, opt_state, xb, yb, mb, hp):
    # Differentiate a device-varying copy: the gradient of a replicated input
    # would otherwise be summed over devices by shard_map's transpose already.
    local = jax.tree.map(lambda a: jax.lax.pcast(a, AXIS, to='varying'), params)
    value, g = grad_sources.value_and_grad(
      cfg.grad,
      local,
      xb,
      yb,
      loss=cfg.loss_record,
      reg=0.0,
      penalty=cfg.penalty,
      loss_hparams=hp.loss_hparams,
      mask=mb,
    )
    # `mb` holds each row's weight (0 for padding), so `count` is the device's Σ w and
    # `value · count` its Σ w L: the global quotient is the batch's weighted mean Σ w L / Σ w.
    count = jnp.sum(mb)
    total = jax.lax.psum(count, AXIS)
    # A batch whose weights are all 0 has mean 0, as `losses.weighted_mean` has it, not 0 / 0.
    total = jnp.where(total > 0, total, 1.0)
    value = jax.lax.psum(value * count, AXIS) / total
    g = jax.tree.map(lambda a: jax.lax.psum(a * count, AXIS) / total, g)
    p_value, p_grad = _penalty_value_and_grad(cfg, params, hp.reg)
    g = g._replace(W=g.W + p_grad.W)
    updates, opt_state = optimizer.update(g, step_lib.with_hparams(opt_state, hp), params)
    return optax.apply_updates(params, updates), opt_state, value + p_value

  return step


def device_plan(cfg, num_rows, num_devices, sharded):
  """`(steps, local_batch, plan(key, valid) -> (idx [steps, b], mask [steps, b]))` for one device."""
  if sharded:
    local = num_rows  # rows this device holds
    batch = (
      local
      if cfg.batch_size in (0, None)
      else math.ceil(min(cfg.batch_size, num_rows * num_devices) / num_devices)
    )
    batch = min(batch, local)
    steps = math.ceil(local / batch)

    def plan(key, valid):
      k = jax.lax.axis_index(AXIS)
      idx, mask = step_lib.batch_plan(jax.random.fold_in(key, k), local, steps, batch, valid.dtype)
      return idx, mask * valid[idx]

    return steps, batch, plan
  steps, batch = step_lib.steps_per_epoch(cfg, num_rows)

  def plan(key, valid):
    if steps == 1:
      idx, mask = jnp.arange(num_rows)[None], jnp.ones((1, num_rows), valid.dtype)
    else:
      idx, mask = step_lib.batch_plan(key, num_rows, steps, batch, valid.dtype)
    return device_slice(idx, mask * valid[idx], num_devices)  # sample weights (all 1 without them)

  return steps, math.ceil(batch / num_devices), plan


def device_slice(idx, mask, num_devices):
  """This device's columns of a global batch plan `(idx, mask)` `[steps, batch]`, inside `shard_map`.

  The batch is padded to a multiple of `num_devices` with index 0 and mask 0,
  then cut into `num_devices` equal slices along the `'data'` axis.
  """
  per_device = math.ceil(idx.shape[1] / num_devices)
  pad = per_device * num_devices - idx.shape[1]
  idx = jnp.pad(idx, ((0, 0), (0, pad)))
  mask = jnp.pad(mask, ((0, 0), (0, pad)))
  k = jax.lax.axis_index(AXIS)
  take = lambda a: jax.lax.dynamic_slice_in_dim(a, k * per_device, per_device, axis=1)
  return take(idx), take(mask)


def make_epoch_fn(cfg, num_rows, num_devices, sharded=False):
  """The per-device body of a data-parallel epoch.

  `(params, opt_state, x, y, valid, key, hp) -> (params, opt_state, losses)`,
  run under `shard_map` or `pmap` with axis name `'data'`; `x`, `y`, `valid`
  are the device's rows (all rows when replicated). `valid` is each row's
  sample weight (1 without weights, 0 for padding): every step descends its
  global batch's weighted mean, as a single device does.
  """
  steps, _, plan = device_plan(cfg, num_rows, num_devices, sharded)
  step = global_mean_step(cfg, steps)

  def epoch(params, opt_state, x, y, valid, key, hp):
    idx, mask = plan(key, valid)
    return step_lib.scan_batches(step, params, opt_state, x, y, idx, mask, hp)

  return epoch


def compiled_epoch_fn(cfg, num_rows, num_devices, sharded=False):
  """A jitted data-parallel epoch `(params, opt_state, x, y, valid, key, hp)`.

  With `cfg.parallel == 'shard_map'` the arrays are global (`x` replicated,
  or sharded over `'data'` when `sharded`); with `'pmap'` they carry a
  leading device axis when sharded and are broadcast when replicated.
  Returns replicated `params` and `opt_state` in both cases. One program per
  `config.StepConfig` and size: new hyperparameter values never recompile.
  """
  structure = step_lib.structural(cfg)
  if structure.parallel == 'pmap':
    return _pmapped_epoch(structure, num_rows, num_devices, sharded)
  return functools.partial(
    _shard_map_epoch, structure=structure, num_rows=num_rows, num_devices=num_devices, sharded=sharded
  )


@functools.partial(jax.jit, static_argnames=('structure', 'num_rows', 'num_devices', 'sharded'))
def _shard_map_epoch(params, opt_state, x, y, valid, key, hp, *, structure, num_rows, num_devices, sharded):
  spec = P(AXIS) if sharded else P()
  return jax.shard_map(
    make_epoch_fn(structure, num_rows, num_devices, sharded),
    mesh=make_mesh(num_devices),
    in_specs=(P(), P(), spec, spec, spec, P(), P()),
    out_specs=(P(), P(), P()),
  )(params, opt_state, x, y, valid, key, hp)


# `jax.pmap` takes `in_axes` and `devices` when it is built, not when it is called, and it has no
# static keyword arguments, so the pmap path keeps a cache of its built programs, keyed on the
# hashable `config.StepConfig` and the sizes (the shard_map path above is a plain `jax.jit`).
@functools.lru_cache(maxsize=32)
def _pmapped_epoch(structure, num_rows, num_devices, sharded):
  body = make_epoch_fn(structure, num_rows, num_devices, sharded)
  data_axis = 0 if sharded else None
  # pmap needs one mapped argument even when all the data is broadcast.
  mapped = jax.pmap(
    lambda _, *args: body(*args),
    axis_name=AXIS,
    in_axes=(0, None, None, data_axis, data_axis, data_axis, None, None),
    devices=jax.devices()[:num_devices],
  )
  ids = np.arange(num_devices)

  def run(params, opt_state, x, y, valid, key, hp):
    p, o, v = mapped(ids, params, opt_state, x, y, valid, key, hp)
    return jax.tree.map(lambda a: a[0], (p, o, v))

  return run


def place(cfg, x, y, num_devices, sharded=False, w=None):
  """Puts training data where a data-parallel epoch wants it: `(x, y, valid)`.

  Replicated: every device gets all rows. Sharded (one process's local rows):
  padded to the same count on every device (`valid` marks real rows) and
  assembled into global arrays over all processes. `valid` holds the rows'
  sample weights `w` (`[N]`, else all 1), sharded like `y`; padding has 0.
  """
  valid = np.ones(len(x), x.dtype) if w is None else np.asarray(w, x.dtype)
  if not sharded:
    return x, y, valid
  local_devices = [d for d in make_mesh(num_devices).devices.flat if d.process_index == jax.process_index()]
  per = math.ceil(len(x) / len(local_devices))
  pad = per * len(local_devices) - len(x)
  x = np.pad(x, ((0, pad), (0, 0)))
  y = np.pad(y, [(0, pad)] + [(0, 0)] * (np.ndim(y) - 1))
  valid = np.pad(valid, (0, pad))
  if cfg.parallel == 'pmap':
    split = lambda a: a.reshape(len(local_devices), per, *a.shape[1:])
    return split(x), split(y), split(valid)
  sharding = NamedSharding(make_mesh(num_devices), P(AXIS))
  put = lambda a: jax.make_array_from_process_local_data(sharding, a)
  return put(x), put(y), put(valid)


def rows_per_device(cfg, num_local_rows, num_devices, sharded):
  if not sharded:
    return num_local_rows
  local = len([d for d in make_mesh(num_devices).devices.flat if d.process_index == jax.process_index()])
  return math.ceil(num_local_rows / local)


def fit_epoch_fn(cfg, dataset, x, y, w=None):
  """`train.fit`'s data-parallel epoch, with the signature `(params, opt_state, x, y, key, hp[, w])`.

  Places the training split `x, y` and its sample weights `w` (`[N]`, or
  `None`) on the devices once (each process its own rows when there are
  several); the `x, y, w` the epoch is called with are ignored.
  """

  num_devices = cfg.num_devices or jax.device_count()
  if num_devices > jax.device_count():
    raise ValueError(f'num_devices={num_devices} but only {jax.device_count()} device(s) are visible.')
  sharded = jax.process_count() > 1
  if sharded:  # each process trains on its own rows of the training split
    rows = shard_rows(len(dataset.x_train))
    x, y = x[rows], y[rows]
    w = None if w is None else np.asarray(w)[rows]
  xs, ys, valid = place(cfg, np.asarray(x), np.asarray(y), num_devices, sharded, w)
  per_device = rows_per_device(cfg, len(x), num_devices, sharded)
  run = compiled_epoch_fn(step_lib.structural(cfg), per_device, num_devices, sharded)
  return lambda params, opt_state, _x, _y, key, hp, _w=None: run(params, opt_state, xs, ys, valid, key, hp)


def shard_models(tree, num_devices=0):
  """Spreads the leading model axis of a sweep's arrays over the devices of a mesh.

  The model count must be a multiple of the device count (`sweep.run_sweep`
  pads it with dummy models).
  """
  sharding = NamedSharding(make_mesh(num_devices), P(AXIS))
  return jax.tree.map(lambda a: jax.device_put(a, sharding), tree)
