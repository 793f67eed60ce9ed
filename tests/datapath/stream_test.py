"""Tests of linear_jax.stream: streamed training and evaluation against in-memory training."""

import dataclasses
import json
import math
import os
import pathlib
import signal
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linear_jax.data import chunks
from linear_jax.data import datasets as data
from linear_jax.datapath import base
from linear_jax.datapath import blocks
from linear_jax.datapath import parallel
from linear_jax.datapath import resident
from linear_jax.datapath import standardize
from linear_jax.datapath import stream
from linear_jax.datapath import transfer
from linear_jax.maths import model
from linear_jax.optim import config
from linear_jax.optim import step
from linear_jax.runs import experiment
from linear_jax.solvers import lbfgs as solvers
from linear_jax.training import lbfgs
from linear_jax.training import preemption
from linear_jax.training import train


def _dataset(tmp_path, n=203, d=5, c=3, dtype=np.float32, seed=0, kind='class'):
  """A prepared dataset whose training split is a memory map of an .npy file written to `tmp_path`."""
  raw = data.blobs(n, d, c, seed=seed) if kind == 'class' else data.linreg(n, d, seed=seed)
  ds = data.prepare(raw, 'blobs', val_fraction=0.2, test_fraction=0.2, seed=seed)
  path = tmp_path / 'x_train.npy'
  np.save(path, ds.x_train.astype(dtype))
  return dataclasses.replace(ds, x_train=np.load(path, mmap_mode='r'))


def _in_memory(ds):
  return dataclasses.replace(ds, x_train=np.asarray(ds.x_train, np.float32))


@pytest.mark.parametrize('loss', ['softmax', 'svm'])
def test_full_batch_stream_equals_in_memory(tmp_path, loss):
  ds = _dataset(tmp_path)
  cfg = config.TrainConfig(loss=loss, batch_size=0, epochs=5, learning_rate=0.5, optimizer='momentum')
  streamed = train.fit(dataclasses.replace(cfg, stream=True, block_rows=17), ds)
  ref = train.fit(cfg, _in_memory(ds))
  assert streamed.streamed and not ref.streamed
  assert len(blocks.spans(len(ds.x_train), 17)) > 5  # several blocks, the last one short
  np.testing.assert_allclose(streamed.params.W, ref.params.W, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(streamed.params.b, ref.params.b, rtol=1e-5, atol=1e-6)
  for s, r in zip(streamed.history, ref.history, strict=True):
    np.testing.assert_allclose(s['train_loss'], r['train_loss'], rtol=1e-5)
    np.testing.assert_allclose(s['val_accuracy'], r['val_accuracy'])


def test_full_batch_stream_equals_in_memory_float64_bias_trick(tmp_path):
  ds = _dataset(tmp_path, dtype=np.float64, kind='real')
  cfg = config.TrainConfig(
    loss='l2', batch_size=0, epochs=3, dtype='float64', bias_trick=True, learning_rate=0.1
  )
  streamed = train.fit(dataclasses.replace(cfg, stream=True, block_rows=10), ds)
  ref = train.fit(cfg, _in_memory(ds))
  np.testing.assert_allclose(streamed.params.W, ref.params.W, rtol=1e-12, atol=1e-14)


def test_streamed_evaluation_equals_in_memory(tmp_path):
  ds = _dataset(tmp_path)
  cfg = config.TrainConfig(epochs=2, batch_size=16)
  params = train.fit(cfg, _in_memory(ds)).params
  ours = train.evaluate(dataclasses.replace(cfg, stream=True, block_rows=23), ds, params)
  ref = train.evaluate(cfg, _in_memory(ds), params)
  assert ours.keys() == ref.keys()
  for k in ref:
    np.testing.assert_allclose(ours[k], ref[k], rtol=1e-5, err_msg=k)


def test_every_example_once_per_epoch_and_order_varies_with_key():
  cfg = config.TrainConfig(batch_size=8, block_rows=24)
  n = 100  # blocks of 24 rows: 3 batches each, and a last block of 4 rows
  orders = [stream.epoch_order(cfg, jax.random.PRNGKey(s), n) for s in range(3)]
  for order in orders:
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
  assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
  again = stream.epoch_order(cfg, jax.random.PRNGKey(1), n)
  np.testing.assert_array_equal(again, orders[1])  # the key fixes the order


def test_block_order_and_shuffle_statistics():
  # Block order is a uniformly drawn permutation of the blocks, and rows inside a
  # block are uniformly shuffled: chi-square tests on where things land.
  cfg = config.TrainConfig(batch_size=4, block_rows=8)
  n, trials = 32, 400  # 4 blocks of 8 rows
  first_block = np.zeros(4)
  first_row_in_block = np.zeros(8)
  for s in range(trials):
    order = stream.epoch_order(cfg, jax.random.PRNGKey(s), n)
    first_block[order[0] // 8] += 1
    first_row_in_block[order[0] % 8] += 1
    # contiguous blocks: the first 8 rows visited are one whole block
    assert len(set(order[:8] // 8)) == 1
  # Pearson's chi-square against uniform, below its 0.1% critical value (3 and 7 degrees of freedom).
  chi2 = lambda counts: np.sum((counts - counts.mean()) ** 2 / counts.mean())
  assert chi2(first_block) < 16.27
  assert chi2(first_row_in_block) < 24.32


def test_sgd_stream_follows_epoch_order(tmp_path):
  # One streamed SGD epoch equals in-memory steps taken on the batches of `epoch_order`.
  ds = _dataset(tmp_path, n=100)
  cfg = config.TrainConfig(batch_size=8, epochs=1, block_rows=24, stream=True, learning_rate=0.3)
  result = train.fit(cfg, ds)
  x = np.asarray(ds.x_train)
  y = np.asarray(ds.y_train)
  order = stream.epoch_order(cfg, jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 0), len(x))
  hp = step.hparams(cfg)
  steps, _ = step.steps_per_epoch(cfg, len(x))
  params, opt_state = step.init_state(cfg, x.shape[1], 3, hp, steps)
  update = jax.jit(step.make_update(cfg, steps, masked=False))
  # the batches: each block's rows, cut into 8s (the short block gives one 4-row batch)
  starts = [0] + [i for i in range(1, len(order)) if order[i] // 24 != order[i - 1] // 24]
  visits = np.split(order, starts[1:])
  count = 0
  for block in visits:
    for j in range(0, len(block), 8):
      rows = block[j : j + 8]
      params, opt_state, _ = update(params, opt_state, x[rows], y[rows], None, hp)
      count += 1
  assert count == steps == math.ceil(len(x) / 8)
  np.testing.assert_allclose(result.params.W, params.W, rtol=1e-5, atol=1e-6)


def test_sgd_stream_learns_as_well_as_in_memory(tmp_path):
  ds = _dataset(tmp_path, n=400)
  cfg = config.TrainConfig(batch_size=16, epochs=10, block_rows=64)
  ours = train.fit(dataclasses.replace(cfg, stream=True), ds).history[-1]['val_accuracy']
  ref = train.fit(cfg, _in_memory(ds)).history[-1]['val_accuracy']
  assert ours >= ref - 0.05


def test_float16_file_is_widened_on_the_device(tmp_path):
  ds = _dataset(tmp_path, dtype=np.float16)
  assert ds.x_train.dtype == np.float16
  assert blocks.transfer_dtype(ds.x_train, 'float32') == np.float16
  cfg = config.TrainConfig(batch_size=0, epochs=3)
  streamed = train.fit(dataclasses.replace(cfg, stream=True, block_rows=32), ds)
  ref = train.fit(cfg, dataclasses.replace(ds, x_train=np.asarray(ds.x_train, np.float32)))
  assert streamed.params.W.dtype == np.float32
  np.testing.assert_allclose(streamed.params.W, ref.params.W, rtol=1e-5, atol=1e-6)


def test_streams_automatically_when_data_does_not_fit(tmp_path, monkeypatch):
  ds = _dataset(tmp_path)
  cfg = config.TrainConfig(epochs=1)
  assert not train.fit(cfg, ds).streamed
  budget = resident.bytes_needed(cfg, ds) - 1  # the splits do not fit; the model and a block do
  monkeypatch.setattr(resident, 'memory_budget', lambda device=None: budget)
  assert train.fit(cfg, ds).streamed


def test_prepared_splits_on_the_cpu_count_nothing_against_free_memory(monkeypatch):
  """They are taken as they are: the memory they hold is already missing from the free memory."""
  ds = data.prepare(data.blobs(203, 5, 3), 'blobs', val_fraction=0.2, test_fraction=0.2)
  features = sum(getattr(ds, f'x_{s}').nbytes for s in ('train', 'val', 'test'))
  labels = sum(getattr(ds, f'y_{s}').nbytes for s in ('train', 'val', 'test'))
  monkeypatch.setattr(resident, 'memory_budget', lambda device=None: 3000)
  assert 0.8 * 3000 < features + labels and labels < 0.8 * 3000
  on_cpu = jax.default_backend() == 'cpu'  # an accelerator copies every split into its own memory
  assert resident.bytes_needed(config.TrainConfig(), ds) == labels + (0 if on_cpu else features)
  assert resident.should_stream(config.TrainConfig(), ds) == (not on_cpu)
  # A copy is needed with the bias column, or in float64: those count, and stream here.
  assert resident.should_stream(config.TrainConfig(bias_trick=True), ds)
  assert resident.bytes_needed(config.TrainConfig(bias_trick=True), ds) == labels + features // 5 * 6


def test_parallel_splits_count_against_free_memory(monkeypatch):
  """--parallel pads a copy of each split to spread it over the devices: that copy counts."""
  ds = data.prepare(data.blobs(203, 5, 3), 'blobs', val_fraction=0.2, test_fraction=0.2)
  labels = sum(getattr(ds, f'y_{s}').nbytes for s in ('train', 'val', 'test'))
  features = sum(getattr(ds, f'x_{s}').nbytes for s in ('train', 'val', 'test'))
  assert resident.bytes_needed(config.TrainConfig(parallel='shard_map'), ds) == labels + features


def test_several_processes_stream_only_when_asked_and_refuse_what_does_not_fit(tmp_path, monkeypatch):
  # Each process's free memory is its own; were it to decide, processes could take different paths
  # (different collectives). So with several processes the flags decide, and a process that cannot
  # hold the splits refuses with the figures, before any work.
  ds = _dataset(tmp_path)
  cfg = config.TrainConfig(epochs=1)
  monkeypatch.setattr(resident, 'memory_budget', lambda device=None: 1000)
  resident.check_fits(cfg, ds)  # one process: it streams instead
  assert resident.should_stream(cfg, ds)
  monkeypatch.setattr(base, 'several', lambda: True)
  assert not resident.should_stream(cfg, ds)
  with pytest.raises(
    ValueError, match=r'the splits need .* GB in memory, but process 0 has 0.00 GB free.*--stream'
  ):
    resident.check_fits(cfg, ds)
  assert resident.should_stream(dataclasses.replace(cfg, stream=True), ds)
  resident.check_fits(dataclasses.replace(cfg, stream=True), ds)
  monkeypatch.setattr(resident, 'memory_budget', lambda device=None: 10**12)
  resident.check_fits(cfg, ds)


def test_host_array_is_aligned_and_taken_without_copy_on_cpu():
  x = np.arange(12.0).reshape(3, 4)
  a = transfer.host_array(x, np.float32, bias_column=True)
  assert a.ctypes.data % transfer.ALIGN == 0 and a.dtype == np.float32
  np.testing.assert_array_equal(a, np.concatenate([x, np.ones((3, 1))], 1))
  assert transfer.host_array(a[:, :], np.float32) is not None
  if jax.default_backend() == 'cpu':
    b = transfer.host_array(x, np.float32)
    assert jax.device_put(b).unsafe_buffer_pointer() == b.ctypes.data


def test_release_keeps_the_data_correct(tmp_path):
  x = np.random.default_rng(0).standard_normal((1000, 16)).astype(np.float32)
  np.save(tmp_path / 'x.npy', x)
  m = np.load(tmp_path / 'x.npy', mmap_mode='r')
  for a, b in blocks.spans(len(m), 100):
    np.testing.assert_array_equal(transfer.read(m, a, b, np.float32), x[a:b])
  np.testing.assert_array_equal(np.asarray(m), x)  # pages read again after release


def test_rejects_non_finite_value_naming_row_and_column(tmp_path):
  ds = _dataset(tmp_path, n=300)
  x = np.array(ds.x_train)
  x[150, 2] = np.nan
  np.save(tmp_path / 'bad.npy', x)
  bad = dataclasses.replace(ds, x_train=np.load(tmp_path / 'bad.npy', mmap_mode='r'))
  cfg = config.TrainConfig(stream=True, block_rows=32, epochs=1)
  with pytest.raises(ValueError, match='example 150, feature 2'):
    train.fit(cfg, bad)


def test_rejects_pmap_streaming_and_pmap_lbfgs(tmp_path):
  # Streaming spreads its blocks over the devices with shard_map (tests/parallel_test.py); pmap
  # does not stream, and says so before any work.
  ds = _dataset(tmp_path)
  with pytest.raises(ValueError, match='--parallel=pmap does not stream; .* use --parallel=shard_map'):
    train.fit(config.TrainConfig(stream=True, parallel='pmap', batch_size=0, epochs=1), ds)
  for batch in (0, 32):
    stream.check_config(config.TrainConfig(stream=True, parallel='shard_map', batch_size=batch))
  # L-BFGS splits its rows over the devices with shard_map, in memory or streamed; pmap has none.
  lbfgs = config.TrainConfig(optimizer='lbfgs', reg=1e-2, parallel='pmap')
  with pytest.raises(ValueError, match=r'--optimizer=lbfgs has no --parallel=pmap; use --parallel=shard_map'):
    train.fit(lbfgs, ds)
  for streamed in (False, True):
    train.check_fit(dataclasses.replace(lbfgs, parallel='shard_map', stream=streamed), ds)
  assert stream.placement(config.TrainConfig(stream=True, parallel='none')) is None


def test_rejects_bad_eval_every_and_block_rows():
  with pytest.raises(ValueError, match='eval_every'):
    config.TrainConfig(eval_every=0).validate()
  with pytest.raises(ValueError, match='block_rows'):
    config.TrainConfig(block_rows=-1).validate()


def test_eval_every_evaluates_on_cadence_and_at_the_last_epoch(tmp_path):
  ds = _in_memory(_dataset(tmp_path))
  result = train.fit(config.TrainConfig(epochs=7, eval_every=3, batch_size=16), ds)
  assert [m['evaluated'] for m in result.history] == [False, False, True, False, False, True, True]
  for m in result.history:
    assert 'train_pass_loss' in m and np.isfinite(m['train_pass_loss'])
    assert ('val_accuracy' in m) == m['evaluated'] and ('train_loss' in m) == m['evaluated']
  assert result.best_epoch in (3, 6, 7)
  every = train.fit(config.TrainConfig(epochs=7, batch_size=16), ds)
  # the same training: evaluation never changes the parameters
  np.testing.assert_array_equal(result.params.W, every.params.W)
  assert result.history[-1]['val_accuracy'] == every.history[-1]['val_accuracy']


def test_streamed_resume_is_bit_exact(tmp_path):
  ds = _dataset(tmp_path, n=100)
  cfg = config.TrainConfig(epochs=4, batch_size=8, block_rows=24, stream=True, optimizer='adam')
  whole = train.fit(cfg, ds)

  def stop_after_2(metrics):
    if metrics['epoch'] == 2:
      raise KeyboardInterrupt

  (tmp_path / 'w').mkdir()
  first = train.fit(cfg, ds, workdir=str(tmp_path / 'w'), on_epoch=stop_after_2)
  assert first.interrupted and first.streamed
  resumed = train.fit(cfg, ds, workdir=str(tmp_path / 'w'), resume=True)
  assert resumed.resumed_from == 2
  np.testing.assert_array_equal(resumed.params.W, whole.params.W)


def _train_only(x, y, w=None):
  """A 3-class `Dataset` of a training split `x` `[N, 4]`, `y` (and weights `w`), nothing else."""
  empty = np.zeros((0, 4), x.dtype)
  return data.Dataset(
    name='mapped',
    x_train=x,
    y_train=y,
    x_val=empty,
    y_val=np.zeros(0, np.int64),
    x_test=empty,
    y_test=np.zeros(0, np.int64),
    kind='class',
    num_classes=3,
    shift=np.zeros(4),
    scale=np.ones(4),
    w_train=w,
  )


def _two_processes(script, folder, *args, timeout=240):
  """Runs `script PORT ID FOLDER *args` as processes 0 and 1 of one JAX cluster; their last lines."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  root = pathlib.Path(__file__).resolve().parents[2]
  procs = [
    subprocess.Popen(
      [sys.executable, '-c', script, str(port), str(i), str(folder), *args],
      cwd=root,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  try:
    outs = [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:  # never leave a process behind
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, (_, err) in zip(procs, outs, strict=True):
    assert p.returncode == 0, err[-2000:]
  return [out.strip().splitlines()[-1] for out, _ in outs]


# Two processes of one JAX cluster, two CPU devices each, compute what the tests below assert: first
# (float64 off, as an experiment runs) full-batch descent and L-BFGS, each process on its own rows
# (`plain`, `weighted`), then (float64 on) the mini-batch runs in lockstep. Two devices a process, not
# one: `Lockstep` and `_lockstep_block` take the devices of each process as a number (each block padded
# to a multiple of it, each device's rows its slice), with no branch for one, so two covers one; and
# the full passes and L-BFGS of several processes run on each process's default device either way.
_CLUSTER = r"""
import json, sys
import numpy as np
import jax
jax.config.update('jax_num_cpu_devices', 2)  # devices of each process
from linear_jax.data import datasets as data
from linear_jax.datapath import parallel
from linear_jax.datapath import stream
from linear_jax.training import train
from linear_jax.optim import config
port, pid, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
parallel.initialize(f'127.0.0.1:{port}', 2, pid)

def mapped(stem, weights=None):
  x = np.load(f'{folder}/{stem}_x.npy', mmap_mode='r', allow_pickle=False)
  return data.Dataset(
    name=stem, x_train=x, y_train=np.load(f'{folder}/{stem}_y.npy', allow_pickle=False),
    x_val=np.zeros((0, 4), x.dtype), y_val=np.zeros(0, np.int64), x_test=np.zeros((0, 4), x.dtype),
    y_test=np.zeros(0, np.int64), kind='class', num_classes=3, shift=np.zeros(4), scale=np.ones(4),
    w_train=None if weights is None else np.load(f'{folder}/{weights}', allow_pickle=False))

out = {'processes': jax.process_count(), 'devices': jax.device_count()}
for name, weights in (('plain', None), ('weighted', 'skewed_w.npy')):
  ds = mapped('odd', weights)
  cfg = config.TrainConfig(batch_size=0, epochs=4, learning_rate=0.5, stream=True, block_rows=16)
  result = train.fit(cfg, ds)
  lcfg = config.TrainConfig(optimizer='lbfgs', reg=1e-2, tol=1e-4, stream=True, block_rows=16)
  lbfgs = train.fit(lcfg, ds)
  mine = stream.local_rows(len(ds.x_train))
  out[name] = {'W': np.asarray(result.params.W).tolist(), 'loss': result.history[-1]['train_loss'],
               'rows': [mine.start, mine.stop], 'lbfgs_W': np.asarray(lbfgs.params.W).tolist(),
               'lbfgs': lbfgs.solver}
jax.config.update('jax_enable_x64', True)
tiny = train.fit(config.TrainConfig(batch_size=8, epochs=1, learning_rate=1e-7, momentum=0.0, reg=0.0,
                                   stream=True, block_rows=24, dtype='float64'), mapped('even'))
sgd = train.fit(config.TrainConfig(batch_size=8, epochs=4, learning_rate=0.1, stream=True, block_rows=24),
                mapped('odd', 'odd_w.npy'))

def stop_after_2(metrics):
  if metrics['epoch'] == 2:
    raise KeyboardInterrupt

adam = config.TrainConfig(batch_size=8, epochs=4, optimizer='adam', learning_rate=0.05, stream=True,
                         block_rows=24)
whole = train.fit(adam, mapped('odd', 'odd_w.npy'))
first = train.fit(adam, mapped('odd', 'odd_w.npy'), workdir=folder + '/ckpt', on_epoch=stop_after_2)
resumed = train.fit(adam, mapped('odd', 'odd_w.npy'), workdir=folder + '/ckpt', resume=True)
out.update({'tiny_W': np.asarray(tiny.params.W).tolist(), 'tiny_b': np.asarray(tiny.params.b).tolist(),
            'W': np.asarray(sgd.params.W).tolist(), 'losses': [h['train_loss'] for h in sgd.history],
            'streamed': sgd.streamed,
            'resume': [first.interrupted, resumed.resumed_from,
                       bool(np.array_equal(resumed.params.W, whole.params.W))]})
print(json.dumps(out))
"""

# 96 rows (`even`), 48 per process; 101 rows (`odd`, 51 and 50) with random weights (`odd_w`) and with
# weights that make the first process's rows weigh far more than the second's (`skewed_w`).
EVEN = data.blobs(96, 4, 3, seed=3)
ODD = data.blobs(101, 4, 3, seed=1)
ODD_W = np.random.default_rng(1).uniform(0.5, 1.5, 101)
SKEWED_W = np.where(np.arange(101) < 51, 3.0, 0.25) * np.random.default_rng(1).uniform(0.5, 1.5, 101)


@pytest.fixture(scope='module')
def cluster(tmp_path_factory, once):
  """What both processes of `_CLUSTER` print on their last lines, run once for the test run."""

  def run():
    folder = tmp_path_factory.mktemp('cluster')
    np.save(folder / 'even_x.npy', EVEN.x)
    np.save(folder / 'even_y.npy', EVEN.y)
    np.save(folder / 'odd_x.npy', ODD.x.astype(np.float32))
    np.save(folder / 'odd_y.npy', ODD.y)
    np.save(folder / 'odd_w.npy', ODD_W)
    np.save(folder / 'skewed_w.npy', SKEWED_W)
    (folder / 'ckpt').mkdir()
    return [json.loads(out) for out in _two_processes(_CLUSTER, folder)]

  return once('stream_test_cluster', run)


@pytest.mark.parametrize('weighted', [False, True])
def test_two_processes_stream_their_own_rows_and_equal_one(cluster, weighted):
  # Weighted: the first process's rows weigh far more than the second's, so a share of the
  # rows instead of the weights would move the result.
  ds = _train_only(ODD.x.astype(np.float32), ODD.y, SKEWED_W if weighted else None)
  ref = train.fit(config.TrainConfig(batch_size=0, epochs=4, learning_rate=0.5), ds)
  ref_lbfgs = train.fit(config.TrainConfig(optimizer='lbfgs', reg=1e-2, tol=1e-4), ds)
  outs = cluster
  rows = []
  for out in outs:
    assert out['processes'] == 2
    got = out['weighted' if weighted else 'plain']
    rows.append(got['rows'])
    np.testing.assert_allclose(np.array(got['W']), ref.params.W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got['loss'], ref.history[-1]['train_loss'], rtol=1e-5)
    # L-BFGS over both processes' rows reaches the one-process optimum.
    assert got['lbfgs']['converged'] and got['lbfgs']['grad_norm'] <= 1e-4
    np.testing.assert_allclose(got['lbfgs']['objective'], ref_lbfgs.solver['objective'], rtol=1e-6)
    np.testing.assert_allclose(np.array(got['lbfgs_W']), ref_lbfgs.params.W, atol=1e-3)
  assert rows == [[0, 51], [51, 101]]  # each process read only its own rows
  fits = [out['weighted' if weighted else 'plain'] for out in outs]
  assert fits[0]['lbfgs_W'] == fits[1]['lbfgs_W']  # both processes took the same iterates
  assert fits[0]['lbfgs']['fevals'] == fits[1]['lbfgs']['fevals']


def test_two_processes_stream_mini_batches_in_lockstep(cluster):
  # 96 rows, 48 per process, blocks of 24, global batches of 8 (the same share from each device): every
  # batch is full, so with a learning rate small enough for the steps to be linear, one epoch moves W
  # by −lr · Σ_batches mean_batch ∇ = −lr · (N / 8) · ∇f(W₀), if and only if every row took part once.
  # 101 rows (51 and 50), weighted: the blocks of the second process are padded with weight 0. The
  # same data trained with Adam is stopped after its second epoch and resumed.
  # Both processes took the same steps (their own rows, in `plain` and `weighted`, differ).
  got = [{k: v for k, v in out.items() if k not in ('plain', 'weighted')} for out in cluster]
  assert got[0] == got[1]
  got = got[0]
  assert got['processes'] == 2 and got['devices'] == 4 and got['streamed']
  assert got['resume'] == [True, 2, True]  # stopped after epoch 2, resumed bit for bit

  cfg = config.TrainConfig(batch_size=8, momentum=0.0, reg=0.0, dtype='float64')
  p0, _ = step.init_state(cfg, 4, 3, step.hparams(cfg), 12)
  W0, b0 = np.asarray(p0.W), np.asarray(p0.b)

  def mean_grad(x, y):  # softmax cross-entropy, by hand in NumPy
    s = x @ W0.T + b0
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p.T @ x / len(y), p.mean(0)

  gw, gb = mean_grad(EVEN.x, EVEN.y)
  expected_W, expected_b = -1e-7 * (96 / 8) * gw, -1e-7 * (96 / 8) * gb
  tol = 1e-4 * np.abs(expected_W).max()
  assert np.abs(np.array(got['tiny_W']) - W0 - expected_W).max() <= tol
  assert np.abs(np.array(got['tiny_b']) - b0 - expected_b).max() <= tol
  # The check can fail: an epoch that left out any one row would be outside the tolerance.
  for i in range(96):
    keep = np.arange(96) != i
    missed = -1e-7 * (95 / 8) * mean_grad(EVEN.x[keep], EVEN.y[keep])[0]
    assert np.abs(missed - expected_W).max() > 10 * tol

  # Mini-batches of 8 from two processes (padded, weighted) learn as one process does.
  ds = _train_only(ODD.x.astype(np.float32), ODD.y, ODD_W)
  one = train.fit(
    config.TrainConfig(batch_size=8, epochs=4, learning_rate=0.1, stream=True, block_rows=24), ds
  )
  losses = got['losses']
  assert losses == sorted(losses, reverse=True) and losses[-1] < 0.6 * losses[0]
  np.testing.assert_allclose(losses[-1], one.history[-1]['train_loss'], rtol=0.1)
  np.testing.assert_allclose(np.array(got['W']), one.params.W, atol=0.05)


def test_lockstep_refuses_a_subset_of_the_devices(monkeypatch):
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  monkeypatch.setattr(jax, 'device_count', lambda: 4)
  with pytest.raises(ValueError, match=r'--num_devices=2: .* every device of every process \(4\)'):
    stream.check_config(config.TrainConfig(stream=True, batch_size=8, num_devices=2))
  stream.check_config(config.TrainConfig(stream=True, batch_size=8, num_devices=4))
  # Full-batch passes and L-BFGS add each process's sums over processes, whatever the devices.
  stream.check_config(config.TrainConfig(stream=True, batch_size=0, num_devices=2))
  stream.check_config(config.TrainConfig(stream=True, optimizer='lbfgs', num_devices=2))


def test_lockstep_blocks_cover_every_row_once():
  for n, rows, count in ((101, 24, 2), (10, 3, 4), (7, 2, 3), (2, 5, 3), (48, 24, 2)):
    sizes = None
    seen = []
    for index in range(count):
      s, mine = stream.lockstep_spans(n, rows, index, count)
      assert sizes is None or s == sizes  # the same blocks on every process
      sizes = s
      start = parallel.shard_rows(n, index, count).start
      assert len(mine) == len(s) and all(0 <= b - a <= size for (a, b), size in zip(mine, s, strict=True))
      seen += [start + r for a, b in mine for r in range(a, b)]
    assert sorted(seen) == list(range(n))


def test_prepare_leaves_the_map_and_standardizes_on_the_device(tmp_path):
  raw = data.blobs(150, 5, 3, seed=2)
  x = (raw.x * 3.0 + 5.0).astype(np.float32)
  np.save(tmp_path / 'x.npy', x)
  mapped = data.Raw(np.load(tmp_path / 'x.npy', mmap_mode='r', allow_pickle=False), raw.y, 'class', 3)
  ds = stream.prepare(mapped, 'mapped', val_fraction=0.2, test_fraction=0.1)
  assert isinstance(ds.x_train, np.memmap) and ds.extra[standardize.AFFINE]
  n_train, n_val = len(ds.x_train), len(ds.x_val)
  assert (n_train, n_val, len(ds.x_test)) == (105, 30, 15)  # contiguous: train, then val, then test
  rows = x[:n_train].astype(np.float64)
  # float32 rows are shifted on the device by the mean rounded to float32, which the dataset records.
  np.testing.assert_array_equal(ds.shift, rows.mean(0).astype(np.float32))
  np.testing.assert_allclose(ds.scale, rows.std(0), rtol=1e-10)
  tf = lambda a: ((np.asarray(a, np.float64) - ds.shift) / ds.scale).astype(np.float32)
  ref = dataclasses.replace(
    ds,
    x_train=tf(x[:n_train]),
    x_val=tf(x[n_train : n_train + n_val]),
    x_test=tf(x[n_train + n_val :]),
    extra={},
  )
  cfg = config.TrainConfig(batch_size=0, epochs=5, block_rows=16, learning_rate=0.5)
  ours, theirs = train.fit(cfg, ds), train.fit(cfg, ref)
  assert ours.streamed and not theirs.streamed
  np.testing.assert_allclose(ours.params.W, theirs.params.W, rtol=1e-4, atol=1e-6)
  a, b = train.evaluate(cfg, ds, ours.params), train.evaluate(cfg, ref, ours.params)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)


def _standardized_copy(ds):
  """A `stream.prepare`d `ds` with its splits standardized in memory: what streaming it must equal."""
  tf = lambda a: ((np.asarray(a, np.float64) - ds.shift) / ds.scale).astype(np.float32)
  return dataclasses.replace(ds, x_train=tf(ds.x_train), x_val=tf(ds.x_val), x_test=tf(ds.x_test), extra={})


def _assert_full_batch_streams_like_memory(ds):
  cfg = config.TrainConfig(batch_size=0, epochs=5, block_rows=16, learning_rate=0.5)
  ours, theirs = train.fit(cfg, ds), train.fit(cfg, _standardized_copy(ds))
  assert ours.streamed and not theirs.streamed
  np.testing.assert_allclose(ours.params.W, theirs.params.W, rtol=1e-4, atol=1e-6)


def test_prepare_keeps_sample_weights_and_the_target_dtype(tmp_path):
  """The file's weights, and balanced class weights, travel with their contiguous rows."""
  raw = data.blobs(120, 4, 3, seed=5)
  x = raw.x.astype(np.float32)
  w = np.random.default_rng(0).uniform(0.0, 2.0, 120)
  np.savez(tmp_path / 'd.npz', x=x, y=raw.y, w=w)  # uncompressed: x is memory-mapped
  cfg = experiment.DataConfig(
    dataset='npz', data_path=str(tmp_path / 'd.npz'), val_fraction=0.25, test_fraction=0.25
  )
  ds = experiment.load_dataset(cfg, stream=True)
  assert isinstance(ds.x_train, np.memmap) and ds.extra[standardize.AFFINE]
  np.testing.assert_array_equal(ds.w_train, w[:60].astype(np.float32))
  np.testing.assert_array_equal(ds.w_val, w[60:90].astype(np.float32))
  np.testing.assert_array_equal(ds.w_test, w[90:].astype(np.float32))
  balanced = experiment.load_dataset(dataclasses.replace(cfg, class_weight='balanced'), stream=True)
  y = raw.y[:60]
  per_class = 60 / (3 * np.bincount(y, minlength=3))  # scikit-learn's n / (C · count)
  np.testing.assert_allclose(balanced.w_train, w[:60] * per_class[y], rtol=1e-6)
  np.testing.assert_allclose(balanced.w_test, w[90:] * per_class[raw.y[90:]], rtol=1e-6)
  # Weighted streamed training matches training on the same rows, standardized, in memory.
  _assert_full_batch_streams_like_memory(ds)
  # Real targets keep the training dtype (float64 here), not float32.
  t = 1.23e8 + np.arange(120, dtype=np.float64)
  np.save(tmp_path / 'x.npy', x)
  mapped = data.Raw(np.load(tmp_path / 'x.npy', mmap_mode='r', allow_pickle=False), t, 'real')
  real = stream.prepare(mapped, 'real', dtype=np.float64)
  assert real.y_train.dtype == np.float64
  # Standardized as in memory; in their own units they are the file's, to float64's precision.
  np.testing.assert_allclose(
    real.y_train * real.target_scale + real.target_shift, t[: len(real.y_train)], rtol=1e-15, atol=1e-6
  )


def test_prepare_refuses_rows_sorted_by_label(tmp_path):
  """Contiguous splits of a label-sorted file would leave the last classes out of training."""
  raw = data.blobs(120, 4, 5, seed=5)
  order = np.argsort(raw.y, kind='stable')
  np.save(tmp_path / 'x.npy', raw.x[order].astype(np.float32))
  np.save(tmp_path / 'y.npy', raw.y[order])
  cfg = experiment.DataConfig(
    dataset='npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy')
  )
  with pytest.raises(
    ValueError,
    match=r'npy: streaming takes contiguous splits .* class 4 occurs in the '
    r'validation rows but never in the 84 training rows: the rows look sorted by label',
  ):
    experiment.load_dataset(cfg, stream=True)
  assert experiment.load_dataset(cfg).y_test.max() == 4  # in memory the splits are shuffled: no problem


def test_prepare_refuses_held_out_rows_that_lack_a_common_class(tmp_path):
  """Two classes sorted by label: every class is in training, but the validation and test rows hold only
  the second, so their accuracy says nothing of the first."""
  raw = data.blobs(800, 4, 2, seed=5)
  order = np.argsort(raw.y, kind='stable')
  np.save(tmp_path / 'x.npy', raw.x[order].astype(np.float32))
  np.save(tmp_path / 'y.npy', raw.y[order])
  files = {'dataset': 'npy', 'data_path': str(tmp_path / 'x.npy'), 'labels_path': str(tmp_path / 'y.npy')}
  with pytest.raises(
    ValueError,
    match=r'npy: streaming takes contiguous splits .* class 0, 74% of the training rows, never occurs in '
    r'the validation rows \(80 of them; rows in random order would leave it out with a chance below 1e-09\)'
    r': the rows look sorted by label',
  ):
    experiment.load_dataset(experiment.DataConfig(**files), stream=True)
  # Shuffled, the same file streams; a rare class may be missing from a short range by chance.
  p = np.random.default_rng(0).permutation(800)
  np.save(tmp_path / 'x.npy', raw.x[p].astype(np.float32))
  np.save(tmp_path / 'y.npy', raw.y[p])
  assert len(experiment.load_dataset(experiment.DataConfig(**files), stream=True).y_train) == 560
  rare = np.where(np.arange(800) == 5, 1, 0)  # one example of class 1, in the training rows
  np.save(tmp_path / 'y.npy', rare)
  assert experiment.load_dataset(experiment.DataConfig(**files), stream=True).y_val.max() == 0


def test_an_integer_file_streams(tmp_path):
  raw = data.blobs(200, 4, 2, seed=3)
  pixels = np.clip(raw.x * 40 + 128, 0, 255).astype(np.uint8)
  np.save(tmp_path / 'x.npy', pixels)
  np.save(tmp_path / 'y.npy', raw.y)
  cfg = experiment.DataConfig(
    dataset='npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy')
  )
  ds = experiment.load_dataset(cfg, stream=True)
  assert isinstance(ds.x_train, np.memmap) and ds.x_train.dtype == np.uint8
  _assert_full_batch_streams_like_memory(ds)


@pytest.mark.parametrize('dtype', [np.int64, np.uint32, np.float64, '>f8'])
def test_wide_values_far_from_zero_stream_like_memory(tmp_path, dtype):
  """Values a float32 cannot hold (2^40 + k, 1e9 + x) are shifted in float64 before the cast, not after.

  Cast first, int64 `2^40 + k` rounds to multiples of `2^17` and every row
  looks the same; the streamed fit then learned nothing (accuracy 0.5).
  """
  raw = data.blobs(240, 4, 2, seed=7)
  offset = 2**40 if np.dtype(dtype).kind == 'i' else 2**31 if np.dtype(dtype).kind == 'u' else 1e9
  x = np.round(raw.x * 40 + offset) if np.dtype(dtype).kind in 'iu' else raw.x + offset
  np.save(tmp_path / 'x.npy', x.astype(dtype))
  np.save(tmp_path / 'y.npy', raw.y)
  cfg = experiment.DataConfig(
    dataset='npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy')
  )
  ds = experiment.load_dataset(cfg, stream=True)
  assert isinstance(ds.x_train, np.memmap) and standardize.host_shift(ds.x_train, np.float32)
  ref = _standardized_copy(ds)
  tcfg = config.TrainConfig(epochs=3, batch_size=16, block_rows=32, stream=True)
  for split, (xd, _) in resident.device_data(tcfg, ds).items():  # sweeps, paths and search
    np.testing.assert_allclose(xd, getattr(ref, f'x_{split}'), rtol=1e-5, atol=1e-5)
  sgd, sgd_ref = train.fit(tcfg, ds), train.fit(dataclasses.replace(tcfg, stream=False), ref)
  ours, theirs = sgd.history[-1]['val_accuracy'], sgd_ref.history[-1]['val_accuracy']
  assert sgd.streamed and ours > 0.9 and abs(ours - theirs) <= 0.05
  _assert_full_batch_streams_like_memory(ds)


@pytest.mark.parametrize('dtype', ['>f2', '>f4', '>f8'])
def test_a_big_endian_file_trains_like_its_native_twin(tmp_path, dtype):
  raw = data.blobs(200, 4, 2, seed=3)
  np.save(tmp_path / 'y.npy', raw.y)
  results = {}
  for order in ('<', '>'):
    np.save(tmp_path / f'x{order == ">"}.npy', raw.x.astype(order + dtype[1:]))
    cfg = experiment.DataConfig(
      dataset='npy', data_path=str(tmp_path / f'x{order == ">"}.npy'), labels_path=str(tmp_path / 'y.npy')
    )
    for streamed in (False, True):
      ds = experiment.load_dataset(cfg, stream=streamed)
      fit = train.fit(config.TrainConfig(epochs=2, batch_size=32, stream=streamed), ds)
      results[order, streamed] = fit.params.W
  for streamed in (False, True):  # the same program on the same values (equal, up to an accelerator's order)
    np.testing.assert_allclose(results['>', streamed], results['<', streamed], rtol=1e-6, atol=1e-7)


def test_a_streamed_split_names_its_file_and_the_file_row(tmp_path):
  raw = data.blobs(100, 3, 2, seed=1)
  x = raw.x.astype(np.float32)
  x[93, 1] = np.inf  # the test range: rows 90-99 of the file
  np.save(tmp_path / 'x.npy', x)
  np.save(tmp_path / 'y.npy', raw.y)
  cfg = experiment.DataConfig(
    dataset='npy',
    data_path=str(tmp_path / 'x.npy'),
    labels_path=str(tmp_path / 'y.npy'),
    val_fraction=0.1,
    test_fraction=0.1,
  )
  ds = experiment.load_dataset(cfg, stream=True)
  with pytest.raises(
    ValueError,
    match=r'x\.npy \(test rows\): 1 non-finite feature value\(s\); first at example 93, feature 1: inf',
  ):
    train.fit(config.TrainConfig(stream=True, epochs=1), ds)


def test_prepared_splits_reach_the_cpu_device_without_a_copy():
  ds = data.prepare(data.load('digits'), 'digits')
  arrays = resident.device_data(config.TrainConfig(), ds)
  for split in ('train', 'val', 'test'):
    x = getattr(ds, f'x_{split}')
    assert x.ctypes.data % chunks.ALIGN == 0
    if jax.default_backend() == 'cpu':
      assert arrays[split][0].unsafe_buffer_pointer() == x.ctypes.data


@pytest.mark.parametrize('bias_column', [False, True])
def test_to_device_in_blocks_equals_one_transfer(tmp_path, bias_column):
  x = np.random.default_rng(0).standard_normal((103, 7))
  np.save(tmp_path / 'x.npy', x)
  mapped = np.load(tmp_path / 'x.npy', mmap_mode='r', allow_pickle=False)
  whole = transfer.to_device(x, np.float32, bias_column)
  blocked = transfer.to_device(mapped, np.float32, bias_column, block_bytes=10 * 8 * 4)  # 10 rows a block
  assert blocked.shape == whole.shape == (103, 7 + bias_column) and blocked.dtype == np.float32
  np.testing.assert_array_equal(np.asarray(blocked), np.asarray(whole))
  np.testing.assert_array_equal(np.asarray(whole)[:, :7], x.astype(np.float32))
  # Half-precision rows travel at their size and are widened on the device: the same values.
  half = x.astype(np.float16)
  sent = []
  put = jax.device_put
  with pytest.MonkeyPatch.context() as m:
    m.setattr(jax, 'device_put', lambda a, *r, **k: sent.append(np.asarray(a).dtype) or put(a, *r, **k))
    widened = transfer.to_device(half, np.float32, bias_column, block_bytes=10 * 8 * 4)
  assert set(sent) == {np.dtype(np.float16)} and len(sent) >= 10 and widened.dtype == np.float32
  np.testing.assert_array_equal(np.asarray(widened)[:, :7], half.astype(np.float32))
  if bias_column:
    np.testing.assert_array_equal(np.asarray(widened)[:, 7], 1.0)


@pytest.mark.parametrize('batch_size', [0, 16])
def test_streamed_fits_with_new_hyperparameters_share_compiled_programs(tmp_path, batch_size):
  # A step schedule of 13 epochs: a structure no other test compiles; the first fit adds its programs.
  ds = _dataset(tmp_path)
  cfg = config.TrainConfig(
    batch_size=batch_size,
    epochs=3,
    block_rows=17,
    stream=True,
    schedule='step',
    decay_epochs=13.0,
    optimizer='momentum',
  )
  fns = (stream._block, stream._accumulate_grad, stream._apply, stream._accumulate_eval)  # pylint: disable=protected-access
  programs = lambda: [f._cache_size() for f in fns]
  before = programs()
  first = train.fit(cfg, ds)
  sizes = programs()
  assert sum(sizes) > sum(before)
  other = dataclasses.replace(cfg, learning_rate=0.03, reg=1e-2, momentum=0.5, seed=4, tol=0.5)
  second = train.fit(other, ds)
  assert programs() == sizes  # new values, no new program
  assert not np.allclose(second.params.W, first.params.W)
  if batch_size == 0:  # the shared programs ran `other`'s values: full batch equals the in-memory fit
    ref = train.fit(dataclasses.replace(other, stream=False), _in_memory(ds))
    np.testing.assert_allclose(second.params.W, ref.params.W, rtol=1e-5, atol=1e-6)


def test_streamed_objective_and_gradient_equal_in_memory(tmp_path):
  ds = _dataset(tmp_path, dtype=np.float64)
  cfg = config.TrainConfig(loss='softmax', reg=1e-2, dtype='float64', block_rows=17)
  hp = step.hparams(cfg)
  params = model.Params(
    jax.random.normal(jax.random.PRNGKey(0), (3, 5), jnp.float64), jnp.asarray([0.1, -0.2, 0.3])
  )
  x, y = np.asarray(ds.x_train), np.asarray(ds.y_train, np.int32)
  value, grad = stream.make_objective_fn(cfg, np.load(tmp_path / 'x_train.npy', mmap_mode='r'), y)(params, hp)
  ref_value, ref_grad = jax.value_and_grad(solvers.objective_fn(cfg, jnp.asarray(x), jnp.asarray(y), hp))(
    params
  )
  np.testing.assert_allclose(value, ref_value, rtol=1e-13)
  np.testing.assert_allclose(grad.W, ref_grad.W, rtol=1e-11, atol=1e-14)
  np.testing.assert_allclose(grad.b, ref_grad.b, rtol=1e-11, atol=1e-14)


def _digits():
  return data.prepare(data.load('digits'), 'digits', 0.1, 0.2, dtype=np.float64, seed=0)


@pytest.mark.parametrize(
  'dtype,tol,rtol,atol', [('float64', 1e-9, 1e-12, 1e-6), ('float32', 1e-4, 1e-6, 1e-4)]
)
def test_streamed_lbfgs_reaches_the_in_memory_optimum(dtype, tol, rtol, atol):
  ds = _digits()
  cfg = config.TrainConfig(optimizer='lbfgs', loss='softmax', reg=1e-3, dtype=dtype, tol=tol, epochs=1000)
  lines = []
  ours = train.fit(dataclasses.replace(cfg, stream=True, block_rows=200), ds, on_epoch=lines.append)
  ref = train.fit(cfg, ds)
  assert len(blocks.spans(len(ds.x_train), 200)) > 5  # several blocks, the last one short
  assert ours.streamed and not ref.streamed
  s = ours.solver
  assert ours.stop_reason == 'converged' and s['converged'] and s['grad_norm'] <= tol
  assert s.keys() == ref.solver.keys()
  np.testing.assert_allclose(s['objective'], ref.solver['objective'], rtol=rtol)
  np.testing.assert_allclose(ours.params.W, ref.params.W, atol=atol)
  np.testing.assert_allclose(ours.params.b, ref.params.b, atol=atol)
  # The history, as in memory: one line per iteration, monotone, the full metrics on the last.
  assert lines == ours.history and s['fevals'] >= s['iterations'] == len(ours.history) > 3
  objectives = [m['train_loss'] for m in ours.history]
  assert all(b <= a for a, b in zip(objectives, objectives[1:], strict=False))
  assert ours.history[0]['initial_loss'] > objectives[0] and ours.history[-1]['train_grad_norm'] <= tol
  assert ours.history[-1].keys() == ref.history[-1].keys()
  final = train.evaluate(cfg, ds, ours.params)  # in memory, an independent evaluation
  for k in ('train_loss', 'train_accuracy', 'val_loss', 'val_accuracy'):
    exact = dtype == 'float64' and k.endswith('loss')  # accuracy is a float32 mean
    np.testing.assert_allclose(ours.history[-1][k], final[k], rtol=1e-12 if exact else 1e-5, err_msg=k)
  capped = train.fit(dataclasses.replace(cfg, stream=True, block_rows=200, epochs=3), ds)
  assert capped.stop_reason == 'max_epochs' and capped.solver['iterations'] == len(capped.history) == 3
  assert not capped.solver['converged']


def test_streamed_lbfgs_on_a_prepared_npy_map_standardizes_on_the_device(tmp_path):
  raw = data.blobs(150, 5, 3, seed=2)
  x = (raw.x * 3.0 + 5.0).astype(np.float32)
  np.save(tmp_path / 'x.npy', x)
  np.save(tmp_path / 'y.npy', raw.y)
  mapped = data.load('npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'))
  assert isinstance(mapped.x, np.memmap)
  ds = stream.prepare(mapped, 'npy', val_fraction=0.2, test_fraction=0.1)
  n_train, n_val = len(ds.x_train), len(ds.x_val)
  tf = lambda a: (np.asarray(a, np.float64) - ds.shift) / ds.scale
  ref_ds = dataclasses.replace(
    ds,
    x_train=tf(x[:n_train]),
    x_val=tf(x[n_train : n_train + n_val]),
    x_test=tf(x[n_train + n_val :]),
    extra={},
  )
  cfg = config.TrainConfig(optimizer='lbfgs', reg=1e-2, dtype='float64', tol=1e-9, block_rows=16)
  ours, ref = train.fit(cfg, ds), train.fit(cfg, ref_ds)
  assert ours.streamed and not ref.streamed  # a prepared map always streams
  assert len(blocks.spans(n_train, 16)) > 5
  assert ours.solver['converged'] and ours.solver['grad_norm'] <= 1e-9
  np.testing.assert_allclose(ours.solver['objective'], ref.solver['objective'], rtol=1e-12)
  np.testing.assert_allclose(ours.params.W, ref.params.W, atol=1e-7)
  np.testing.assert_allclose(ours.history[-1]['val_accuracy'], ref.history[-1]['val_accuracy'])


def test_streamed_lbfgs_with_sample_weights_reaches_the_weighted_in_memory_optimum():
  ds = _weighted(_digits())
  cfg = config.TrainConfig(
    optimizer='lbfgs', loss='softmax', reg=1e-3, dtype='float64', tol=1e-9, epochs=1000
  )
  ours = train.fit(dataclasses.replace(cfg, stream=True, block_rows=200), ds)
  ref = train.fit(cfg, ds)
  unweighted = train.fit(cfg, dataclasses.replace(ds, w_train=None, w_val=None, w_test=None))
  assert ours.streamed and ours.solver['converged']
  np.testing.assert_allclose(ours.solver['objective'], ref.solver['objective'], rtol=1e-12)
  np.testing.assert_allclose(ours.params.W, ref.params.W, atol=1e-6)
  assert abs(ours.solver['objective'] - unweighted.solver['objective']) > 1e-4  # the weights count
  # The last line's metrics are the weighted objective, as in memory and as train.evaluate says.
  final = train.evaluate(cfg, ds, ours.params)
  for k in ('train_loss', 'val_loss'):
    np.testing.assert_allclose(ours.history[-1][k], final[k], rtol=1e-12, err_msg=k)  # the same params
    np.testing.assert_allclose(ours.history[-1][k], ref.history[-1][k], rtol=1e-6, err_msg=k)  # two solvers


def test_f_star_with_sample_weights_is_the_same_streamed_or_not():
  ds = _weighted(_digits())
  cfg = config.TrainConfig(loss='softmax', reg=1e-3, dtype='float64')
  ref = lbfgs.optimum(cfg, ds)[0]
  ours = lbfgs.optimum(dataclasses.replace(cfg, stream=True, block_rows=200), ds)[0]
  np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_f_star_of_a_streamed_split_is_computed_over_its_blocks(monkeypatch):
  ds = _digits()
  cfg = config.TrainConfig(loss='softmax', reg=1e-3, dtype='float64')
  ref, ref_params, _ = lbfgs.optimum(cfg, ds, tol=1e-9)
  # Streamed, the whole split must never go to the device at once.
  monkeypatch.setattr(resident, 'device_data', lambda *a, **k: pytest.fail('moved the whole split'))
  ours, params, info = lbfgs.optimum(dataclasses.replace(cfg, stream=True, block_rows=200), ds, tol=1e-9)
  assert info.converged
  np.testing.assert_allclose(ours, ref, rtol=1e-12)
  np.testing.assert_allclose(params.W, ref_params.W, atol=1e-5)


def _weighted(ds, seed=0, zero_block=None):
  """`ds` with random positive sample weights on every split (rows `zero_block` of training at 0)."""
  rng = np.random.default_rng(seed)
  w = {s: rng.uniform(0.2, 3.0, len(getattr(ds, f'x_{s}'))) for s in ('train', 'val', 'test')}
  if zero_block is not None:
    w['train'][zero_block] = 0.0
  return dataclasses.replace(ds, w_train=w['train'], w_val=w['val'], w_test=w['test'])


@pytest.mark.parametrize(
  'loss,dtype,tol', [('softmax', 'float32', 1e-5), ('svm', 'float32', 1e-5), ('l2', 'float64', 1e-10)]
)
def test_weighted_full_batch_stream_equals_in_memory(tmp_path, loss, dtype, tol):
  kind = 'real' if loss == 'l2' else 'class'
  ds = _weighted(_dataset(tmp_path, dtype=np.dtype(dtype), kind=kind), zero_block=slice(17, 34))
  cfg = config.TrainConfig(
    loss=loss, batch_size=0, epochs=5, learning_rate=0.1, optimizer='momentum', dtype=dtype, bias_trick=True
  )
  streamed = train.fit(dataclasses.replace(cfg, stream=True, block_rows=17), ds)  # block 1 weighs 0
  ref = train.fit(cfg, dataclasses.replace(ds, x_train=np.asarray(ds.x_train)))
  unweighted = train.fit(cfg, dataclasses.replace(ds, x_train=np.asarray(ds.x_train), w_train=None))
  assert streamed.streamed and not ref.streamed
  np.testing.assert_allclose(streamed.params.W, ref.params.W, rtol=tol, atol=tol / 10)
  assert np.abs(np.asarray(ref.params.W) - np.asarray(unweighted.params.W)).max() > 100 * tol
  for s, r in zip(streamed.history, ref.history, strict=True):
    np.testing.assert_allclose(s['train_loss'], r['train_loss'], rtol=tol)
    np.testing.assert_allclose(s['val_loss'], r['val_loss'], rtol=tol)


def test_weighted_streamed_evaluation_equals_in_memory(tmp_path):
  ds = _weighted(_dataset(tmp_path), zero_block=slice(0, 23))
  cfg = config.TrainConfig(epochs=2, batch_size=16)
  params = train.fit(cfg, _in_memory(ds)).params
  ours = train.evaluate(dataclasses.replace(cfg, stream=True, block_rows=23), ds, params)
  ref = train.evaluate(cfg, _in_memory(ds), params)
  unweighted = train.evaluate(cfg, dataclasses.replace(_in_memory(ds), w_train=None), params)
  assert ours.keys() == ref.keys()
  for k in ref:
    np.testing.assert_allclose(ours[k], ref[k], rtol=1e-5, err_msg=k)
  # The objective is the weighted mean by hand; accuracy stays unweighted, as in memory.
  x, y = np.asarray(ds.x_train, np.float64), np.asarray(ds.y_train)
  s = x @ np.asarray(params.W, np.float64).T + np.asarray(params.b, np.float64)
  per_example = np.log(np.exp(s - s.max(1, keepdims=True)).sum(1)) + s.max(1) - s[np.arange(len(y)), y]
  penalty = cfg.reg * np.sum(np.asarray(params.W, np.float64) ** 2)
  np.testing.assert_allclose(
    ours['train_loss'], np.average(per_example, weights=ds.w_train) + penalty, rtol=1e-5
  )
  assert ours['train_accuracy'] == pytest.approx(unweighted['train_accuracy'], abs=1e-6)
  assert abs(ours['train_loss'] - unweighted['train_loss']) > 1e-3


def test_weighted_sgd_stream_with_equal_weights_is_the_unweighted_run(tmp_path):
  ds = _dataset(tmp_path, n=100, dtype=np.float64)
  cfg = config.TrainConfig(batch_size=8, epochs=3, block_rows=24, stream=True, dtype='float64')
  plain = train.fit(cfg, ds)
  doubled = train.fit(cfg, dataclasses.replace(ds, w_train=np.full(len(ds.x_train), 2.0)))
  assert doubled.streamed
  np.testing.assert_allclose(doubled.params.W, plain.params.W, rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(
    doubled.history[-1]['train_pass_loss'], plain.history[-1]['train_pass_loss'], rtol=1e-12
  )


def test_weighted_sgd_stream_ignores_rows_of_weight_zero(tmp_path):
  # Rows of weight 0 are moved far away and relabelled: the streamed SGD run does not change,
  # while without their weights the same change moves the parameters.
  ds = _dataset(tmp_path, n=100)
  rng = np.random.default_rng(1)
  zero = rng.random(len(ds.x_train)) < 0.3
  w = np.where(zero, 0.0, rng.uniform(0.5, 2.0, len(ds.x_train)))
  x = np.array(ds.x_train)
  x[zero] = 3.0 * x[zero] + 2.0
  y = np.where(zero, (ds.y_train + 1) % 3, ds.y_train)
  np.save(tmp_path / 'moved.npy', x)
  moved = dataclasses.replace(ds, x_train=np.load(tmp_path / 'moved.npy', mmap_mode='r'), y_train=y)
  cfg = config.TrainConfig(batch_size=8, epochs=2, block_rows=24, stream=True, learning_rate=0.05)
  a = train.fit(cfg, dataclasses.replace(ds, w_train=w))
  b = train.fit(cfg, dataclasses.replace(moved, w_train=w))
  assert a.streamed and b.streamed
  np.testing.assert_allclose(b.params.W, a.params.W, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(b.params.b, a.params.b, rtol=1e-6, atol=1e-7)
  c = train.fit(cfg, ds)
  d = train.fit(cfg, moved)
  assert np.abs(np.asarray(c.params.W) - np.asarray(d.params.W)).max() > 1e-2


def test_block_shares_are_the_weight_fractions_and_add_up_over_processes():
  w = np.array([0.5, 0.0, 2.0, 1.5, 0.0, 0.0, 3.0])
  whole = stream.shares(blocks.spans(7, 3), 7, w)
  np.testing.assert_allclose(whole, [2.5 / 7, 1.5 / 7, 3.0 / 7])
  # Two processes, rows [0, 4) and [4, 7), each cutting its own rows into blocks of 3.
  first = stream.shares(blocks.spans(4, 3), 7, w, offset=0)
  second = stream.shares(blocks.spans(3, 3), 7, w, offset=4)
  np.testing.assert_allclose(first, [2.5 / 7, 1.5 / 7])
  np.testing.assert_allclose(second, [3.0 / 7])
  assert sum(first) + sum(second) == pytest.approx(1.0)
  assert stream.shares(blocks.spans(7, 3), 7) == [3 / 7, 3 / 7, 1 / 7]  # no weights: rows


def test_a_stop_signal_ends_a_streamed_lbfgs_after_the_iteration_in_progress():
  ds = _digits()
  cfg = config.TrainConfig(optimizer='lbfgs', loss='softmax', reg=1e-3, tol=1e-9, epochs=1000, stream=True)
  cfg = dataclasses.replace(cfg, block_rows=200)

  def sigterm_once(line):
    if line['epoch'] == 1:  # the first line is written once the second iteration is reached
      os.kill(os.getpid(), signal.SIGTERM)

  try:
    with preemption.handling():
      result = train.fit(cfg, ds, on_epoch=sigterm_once)
  finally:
    preemption.reset()
  assert result.stop_reason == 'interrupted' and result.interrupted and not result.solver['converged']
  assert result.solver['iterations'] == len(result.history) == 2
  assert result.history[-1]['train_loss'] < result.history[0]['initial_loss']
  assert 'val_accuracy' in result.history[-1]  # the last line still has the full metrics
