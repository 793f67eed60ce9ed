"""Data parallelism on simulated CPU devices and on two local processes.

The number of CPU devices is fixed when JAX's backend starts, and the suite's own process has one: the
checks on 8 simulated devices run in one subprocess (`eight`, run once for the test run: `once`), each
test asserting its part of what it printed; the two-process checks start their own processes.
"""

import json
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# One process with 8 simulated CPU devices computes every number the tests below assert, section by
# section (`out[section]`): one process start, and each program compiled once. Cases that would take the
# same code path twice are left out: the device count enters `parallel.py`, `resident.py` and `stream.py`
# only as the mesh (all 8 devices or the first few) and as the padding of a batch, block or split to a
# multiple of it, so each case runs on one count, chosen so that counts that divide (no padding) and
# ones that do not (padded, masked) both remain, and shard_map and pmap each run on 8 and on 3.
EIGHT_DEVICES = r"""
import dataclasses, json, tempfile
import jax
jax.config.update('jax_num_cpu_devices', 8)
import numpy as np
from linear_jax.data import datasets as data
from linear_jax.datapath import blocks
from linear_jax.datapath import parallel
from linear_jax.datapath import resident
from linear_jax.datapath import stream
from linear_jax.optim import config
from linear_jax.training import train
from linear_jax.tuning import paths
from linear_jax.tuning import sweep

ds = data.prepare(data.blobs(203, 5, 3, seed=0), 'blobs', seed=0)  # 142 training rows
out = {'devices': jax.device_count()}


def gap(p, q):
  diff = lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max()
  return float(max(diff(p.W, q.W), diff(p.b, q.b)))


def unweighted():
  # (batch, parallel, devices). `parallel.device_slice` pads each batch to a multiple of the devices
  # for shard_map and pmap alike: 16 divides 8 (no padding), 16 on 3 and 13 on 8 or 3 are padded and
  # masked; the full batch of 142 rows is `device_plan`'s one-step branch. The gradient source
  # (analytic or autodiff) enters only the step, the same under every batch and count.
  cases = {
    'analytic': [(16, 'shard_map', 8), (16, 'pmap', 3), (0, 'shard_map', 3), (0, 'pmap', 8)],
    'autodiff': [(13, 'shard_map', 8), (13, 'pmap', 3)],
  }
  for grad, runs in cases.items():
    res, single = {}, {}
    for bs, par, nd in runs:
      cfg = config.TrainConfig(epochs=4, batch_size=bs, loss='svm', reg=1e-2, optimizer='momentum',
                            grad=grad)
      if bs not in single:
        single[bs] = train.fit(cfg, ds).params
      p = train.fit(dataclasses.replace(cfg, parallel=par, num_devices=nd), ds).params
      res[f'{bs}/{par}/{nd}'] = gap(p, single[bs])
    out[grad] = res
  cfg = config.TrainConfig(epochs=3, batch_size=16)
  settings = sweep.grid([0.01, 0.1, 0.3, 1.0, 3.0], [0.0, 1e-3])  # 10 models on 8 devices
  a = sweep.run_sweep(cfg, ds, settings)
  b = sweep.run_sweep(dataclasses.replace(cfg, parallel='shard_map'), ds, settings)
  out['sweep'] = float(np.abs(np.asarray(a.params.W) - np.asarray(b.params.W)).max())
  out['sweep_models'] = int(b.params.W.shape[0])
  sharded = parallel.shard_models(np.zeros((16, 3)))
  out['per_device_rows'] = sorted({s.data.shape[0] for s in sharded.addressable_shards})


def weighted():
  rng = np.random.default_rng(0)
  # Random positive weights, 40% of the training rows at 0: some batches of 2 weigh 0 in all.
  w = np.where(rng.random(len(ds.x_train)) < 0.4, 0.0, rng.uniform(0.2, 3.0, len(ds.x_train)))
  d = dataclasses.replace(ds, w_train=w, w_val=rng.uniform(0.2, 3.0, len(ds.x_val)))
  res = {}
  # 16 divides 8; batches of 2 on 3 devices are padded, and some weigh 0 on every device (the step's
  # `total > 0` case); the full batch is one step. (A batch of 13, as 16, has a short last batch and,
  # as 2, is padded: no other branch.) Each of shard_map and pmap on 8 and on 3 devices.
  cases = [(16, 'pmap', 8), (2, 'shard_map', 3), (0, 'shard_map', 8), (0, 'pmap', 3)]
  single = {}
  for bs, par, nd in cases:
    cfg = config.TrainConfig(epochs=3, batch_size=bs, loss='softmax', reg=1e-2, optimizer='momentum',
                            learning_rate=0.05)
    if bs not in single:
      single[bs] = train.fit(cfg, d)
      plain = train.fit(cfg, dataclasses.replace(d, w_train=None)).params
      res[f'{bs}/weights_matter'] = float(np.abs(np.asarray(plain.W) - np.asarray(single[bs].params.W)).max())
    p = train.fit(dataclasses.replace(cfg, parallel=par, num_devices=nd), d)
    loss = abs(p.history[-1]['train_pass_loss'] - single[bs].history[-1]['train_pass_loss'])
    res[f'{bs}/{par}/{nd}'] = float(max(gap(p.params, single[bs].params), loss))
  cfg = config.TrainConfig(epochs=3, batch_size=16)
  settings = sweep.grid([0.01, 0.1, 0.3, 1.0, 3.0], [0.0, 1e-3])
  a = sweep.run_sweep(cfg, d, settings)
  b = sweep.run_sweep(dataclasses.replace(cfg, parallel='shard_map'), d, settings)
  c = sweep.run_sweep(cfg, dataclasses.replace(d, w_train=None), settings)
  res['sweep/shard_map'] = float(np.abs(np.asarray(a.params.W) - np.asarray(b.params.W)).max())
  res['sweep_weights_matter'] = float(np.abs(np.asarray(a.params.W) - np.asarray(c.params.W)).max())
  out['weighted'] = res


def streamed():
  w = np.random.default_rng(0).uniform(0.2, 3.0, len(ds.y_train))
  folder = tempfile.mkdtemp()
  np.save(folder + '/x.npy', np.asarray(ds.x_train, np.float32))
  mapped = dataclasses.replace(ds, x_train=np.load(folder + '/x.npy', mmap_mode='r', allow_pickle=False))
  res = {}
  # Every pass of a data-parallel fit must go through the mesh: count the devices each pass used.
  passes, sharded_blocks = [], []
  pipeline, block = stream.pipeline, stream._block_shard_map

  def counted(step, state, x, y, spans, dtype, w=None, where=None, shift=None):
    passes.append(where and where.devices)
    return pipeline(step, state, x, y, spans, dtype, w, where, shift)

  stream.pipeline = counted
  stream._block_shard_map = lambda *a, **k: sharded_blocks.append(k['num_devices']) or block(*a, **k)
  # Full batch, 37 rows a block: 32 on 8 devices (4 each) and 36 on 3; the short last block goes to
  # every device. Mini-batch (13 rows, 3 per device on 8 devices, 5 on 3, padded): blocks of 26 rows.
  # Each case on one of 8 and 3 devices (both split a block and copy its tail, both pad a batch), so
  # that full batch and mini-batch each run on both counts. float64 runs every weighting and batch;
  # float32 (read and summed in the file's dtype, not widened on the device) one of each.
  cases = [('float32', None, 0, 8), ('float32', w, 13, 3), ('float64', None, 0, 3), ('float64', w, 0, 8),
           ('float64', None, 13, 8), ('float64', w, 13, 3)]
  for dtype, weights, batch, nd in cases:
    d = dataclasses.replace(mapped, w_train=weights)
    lr = 0.5 if batch == 0 else 0.1
    cfg = config.TrainConfig(epochs=4, batch_size=batch, loss='softmax', reg=1e-2, optimizer='momentum',
                            learning_rate=lr, stream=True, block_rows=37, dtype=dtype)
    one = train.fit(cfg, d)
    passes.clear()
    par = train.fit(dataclasses.replace(cfg, parallel='shard_map', num_devices=nd), d)
    assert par.streamed and passes and set(passes) == {nd}, passes
    key = f'{dtype}/{"weighted" if weights is not None else "plain"}/{batch}/{nd}'
    res[key] = float(np.abs(np.asarray(par.params.W) - np.asarray(one.params.W)).max())
    res[key + '/metrics'] = max(abs(a[k] - b[k]) for a, b in zip(one.history, par.history)
                                for k in ('train_loss', 'train_accuracy', 'val_loss', 'val_accuracy'))
  res['sharded_blocks'] = sorted(set(sharded_blocks))
  # Streamed L-BFGS: every evaluation one full pass, each block split over the devices.
  for weights in (None, w):
    d = dataclasses.replace(mapped, w_train=weights)
    cfg = config.TrainConfig(optimizer='lbfgs', reg=1e-2, tol=1e-9, stream=True, block_rows=37,
                             dtype='float64')
    one = train.fit(cfg, d)
    passes.clear()
    par = train.fit(dataclasses.replace(cfg, parallel='shard_map', num_devices=3), d)
    assert par.streamed and set(passes) == {3}, passes
    key = f'float64/lbfgs/{"weighted" if weights is not None else "plain"}'
    res[key] = abs(par.solver['objective'] - one.solver['objective']) / one.solver['objective']
    res[key + '/W'] = float(np.abs(np.asarray(par.params.W) - np.asarray(one.params.W)).max())
  stream.pipeline, stream._block_shard_map = pipeline, block
  cfg = config.TrainConfig(batch_size=0, stream=True, block_rows=37, parallel='shard_map')
  where = stream.placement(cfg)
  seen = []

  def record(state, k, xb, yb, wb):
    shards = xb.addressable_shards[0].data.shape[0]
    seen.append([len(xb.sharding.device_set), shards, len(yb.sharding.device_set)])
    return state

  y = np.asarray(mapped.y_train)
  f32 = np.dtype(np.float32)
  stream.pipeline(record, 0, mapped.x_train, y, blocks.spans(142, 32), f32, where=where)
  everywhere = stream.placement(dataclasses.replace(cfg, batch_size=13), split=False)
  stream.pipeline(record, 0, mapped.x_train, y, blocks.spans(142, 26), f32, where=everywhere)
  res['blocks'] = seen
  res['placed_spans'] = where.spans(142, 37)  # 32-row blocks; the last 14 rows cut into 8 split and 6 copied
  res['small_split'] = where.spans(5, 37)  # fewer rows than devices: one block on every device
  res['rows'] = len(mapped.x_train)
  out['streamed'] = res


def lbfgs():
  res = {}
  # 142 rows: 2 devices take 71 each, 8 take 18 after 2 rows of padding at weight 0.
  for weights, nd in ((None, 2), (np.random.default_rng(0).uniform(0.2, 3.0, len(ds.y_train)), 8)):
    d = dataclasses.replace(ds, w_train=weights)
    cfg = config.TrainConfig(optimizer='lbfgs', reg=1e-2, tol=1e-9, dtype='float64')
    one = train.fit(cfg, d)
    par = train.fit(dataclasses.replace(cfg, parallel='shard_map', num_devices=nd), d)
    key = f'{"weighted" if weights is not None else "plain"}/{nd}'
    res[key + '/objective'] = abs(par.solver['objective'] - one.solver['objective']) / one.solver['objective']
    res[key + '/W'] = float(np.abs(np.asarray(par.params.W) - np.asarray(one.params.W)).max())
  # The regularization path too, by both methods: at each reg, the objective of one device's L-BFGS
  # (the program of the fits above: a reg is a value, so these fits compile nothing new).
  cfg = config.TrainConfig(optimizer='lbfgs', tol=1e-9, dtype='float64')
  regs = [1e-3, 1e-1]
  one = np.array([train.fit(dataclasses.replace(cfg, reg=r), ds).solver['objective'] for r in regs])
  spread = dataclasses.replace(cfg, parallel='shard_map', num_devices=3)
  for method in ('warm', 'batched'):
    par = paths.fit_path(spread, ds, regs, method=method)
    res[f'path/{method}/objective'] = float(np.max(np.abs(par.objective - one) / one))
  x = np.asarray(ds.x_train)
  xs, ys, ws = resident.spread_rows(config.TrainConfig(parallel='shard_map', num_devices=3), x, ds.y_train)
  res['rows'] = [len(x), xs.shape[0], len(xs.sharding.device_set), xs.addressable_shards[0].data.shape[0]]
  res['padding_weight'] = float(np.asarray(ws)[len(x):].sum()) if xs.shape[0] > len(x) else 0.0
  out['lbfgs'] = res


unweighted()
weighted()
jax.config.update('jax_enable_x64', True)  # float64 from here on, as the streamed and L-BFGS runs need
streamed()
lbfgs()
print(json.dumps(out))
"""


def _run_eight_devices():
  """What `EIGHT_DEVICES` prints on its last line, run in a process with 8 simulated CPU devices."""
  res = subprocess.run(
    [sys.executable, '-c', EIGHT_DEVICES], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
  )
  assert res.returncode == 0, res.stderr[-3000:]
  return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def eight(once):
  out = once('parallel_test_eight_devices', _run_eight_devices)
  assert out['devices'] == 8
  return out


def _counts(keys):
  """`{parallel or batch: {device counts}}` of the data-parallel fits named `batch/parallel/devices`."""
  seen = {}
  for key in keys:
    if key.count('/') == 2:
      batch, par, nd = key.split('/')
      seen.setdefault(par, set()).add(int(nd))
      seen.setdefault(batch, set()).add(int(nd))
  return seen


@pytest.mark.parametrize('grad', ['analytic', 'autodiff'])
def test_eight_simulated_devices_equal_one(eight, grad):
  out = eight[grad]
  for key, diff in out.items():
    assert diff < 1e-5, (key, diff)
  counts = _counts(out)
  assert counts['shard_map'] | counts['pmap'] == {8, 3}
  if grad == 'analytic':  # a batch that divides 8 devices and not 3, and the full batch, on both
    assert counts['shard_map'] == counts['pmap'] == counts['16'] == counts['0'] == {8, 3}
  assert eight['sweep'] < 1e-6 and eight['sweep_models'] == 10
  assert eight['per_device_rows'] == [2]  # 16 models on 8 devices: 2 each


def test_weighted_training_on_eight_simulated_devices_equals_one(eight):
  # Sample weights shard with their rows; every step descends the global batch's weighted mean,
  # so shard_map and pmap over 8 and 3 devices end where weighted single-device training does.
  out = eight['weighted']
  for key, diff in out.items():
    if 'matter' in key:
      assert diff > 1e-2, (key, diff)  # the weights change the result
    else:
      assert diff < 1e-5, (key, diff)
  assert _counts(out)['shard_map'] == _counts(out)['pmap'] == {8, 3}
  assert {'16/weights_matter', '2/weights_matter', '0/weights_matter', '2/shard_map/3'} <= set(out)
  assert 'sweep/shard_map' in out


def test_streamed_training_splits_the_blocks_over_the_devices_and_equals_one(eight):
  # A memory-mapped split streamed with --parallel=shard_map. Full batch and L-BFGS: each block's rows
  # are split over 8 (or 3) devices, the short last block copied to all. Mini-batch: each block is
  # copied to every device and each batch split over them. All end where one device's streamed run does.
  out = eight['streamed']
  fits = set()
  for key, diff in out.items():
    if key.startswith('float32'):
      assert diff < 1e-6, (key, diff)
    elif key.endswith('/W'):  # L-BFGS to a gradient of 1e-9: the same optimum
      assert diff < 1e-7, (key, diff)
    elif key.startswith('float64'):
      assert diff < 1e-12, (key, diff)
    if key.startswith('float') and 'lbfgs' not in key:
      fits.add(tuple(key.split('/')[:4]))
  assert 'float64/lbfgs/weighted' in out and 'float64/lbfgs/plain/W' in out
  # float64 with and without weights, full batch and mini-batch; float32 both weightings and batches.
  assert {f[1:3] for f in fits if f[0] == 'float64'} == {
    (w, b) for w in ('plain', 'weighted') for b in '0 13'.split()
  }
  assert {f[1] for f in fits if f[0] == 'float32'} == {'plain', 'weighted'}
  assert {f[2] for f in fits if f[0] == 'float32'} == {'0', '13'}
  # Full batch and mini-batch each on 8 and on 3 devices.
  assert {(f[2], f[3]) for f in fits} == {('0', '8'), ('0', '3'), ('13', '8'), ('13', '3')}
  # 142 training rows in blocks of 32: four blocks of 4 rows per device, then 14 rows on every device;
  # in blocks of 26 for SGD, every block whole on every device.
  assert out['rows'] == 142
  assert out['sharded_blocks'] == [3, 8]  # SGD's blocks ran on the mesh
  assert out['placed_spans'] == [[0, 32], [32, 64], [64, 96], [96, 128], [128, 136], [136, 142]]
  assert out['small_split'] == [[0, 5]]
  assert out['blocks'] == [[8, 4, 8]] * 4 + [[8, 14, 8]] + [[8, 26, 8]] * 5 + [[8, 12, 8]]


def test_lbfgs_in_memory_splits_the_rows_over_the_devices_and_equals_one(eight):
  # --optimizer=lbfgs --parallel=shard_map: the training rows split over 2 (dividing them) or 8 devices
  # (padded with weight 0); the same optimum as one device, weighted or not.
  out = eight['lbfgs']
  for key, diff in out.items():
    if key.endswith('/objective'):
      assert diff < 1e-12, (key, diff)
    elif key.endswith('/W'):
      assert diff < 1e-7, (key, diff)
  assert {'plain/2/W', 'weighted/8/W', 'path/warm/objective', 'path/batched/objective'} <= set(out)
  n = out['rows'][0]
  assert n % 2 == 0 and n % 8 != 0  # 2 devices divide the rows, 8 do not
  assert n % 3 != 0 and out['rows'] == [n, n + (-n % 3), 3, (n + (-n % 3)) // 3]
  assert out['padding_weight'] == 0.0


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _two_processes(command, args, timeout):
  """Runs `python -m COMMAND *args(i) --coordinator_address=… --process_id=i` as processes 0 and 1.

  `args(i)` gives process i's own flags. Returns `[(returncode, stderr)]`; no process is left behind.
  """
  port = _free_port()
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        '-m',
        command,
        *args(i),
        f'--coordinator_address=127.0.0.1:{port}',
        '--num_processes=2',
        f'--process_id={i}',
      ],
      cwd=ROOT,
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
  return [(p.returncode, err) for p, (_, err) in zip(procs, outs, strict=True)]


# The flags of the two-process runs below and of the one-process run they must equal.
TRAIN_ARGS = [
  '--dataset=blobs',
  '--num_examples=301',
  '--num_features=4',
  '--full_batch',
  '--epochs=5',
  '--plots=false',
  '--quiet',
  '--learning_rate=0.5',
]


@pytest.fixture(scope='module')
def one_process_params(tmp_path_factory, once):
  """`params.npz` of `experiments.train TRAIN_ARGS` in one process: what both two-process runs must equal."""

  def train():
    folder = tmp_path_factory.mktemp('one')
    one = subprocess.run(
      [sys.executable, '-m', 'experiments.train', *TRAIN_ARGS, f'--workdir={folder}'],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
    )
    assert one.returncode == 0, one.stderr
    return {k: v.tolist() for k, v in np.load(folder / 'params.npz').items()}

  return {k: np.array(v) for k, v in once('parallel_test_one_process', train).items()}


@pytest.mark.parametrize('streamed', [False, True])
def test_two_processes_train_together_and_equal_one(tmp_path, one_process_params, streamed):
  # Streamed, each process reads its own rows and every evaluation adds its sums over the processes,
  # so a process that skipped one (process 0 evaluates more to write its outputs) would hang the other.
  outs = _two_processes(
    'experiments.train',
    lambda i: [
      *TRAIN_ARGS,
      '--parallel=shard_map',
      *(['--stream', '--block_rows=64'] if streamed else []),
      f'--workdir={tmp_path}/p{i}',
    ],
    timeout=180,
  )
  for code, err in outs:
    assert code == 0, err[-2000:]
  assert not (tmp_path / 'p1').exists()  # only process 0 writes
  a, b = one_process_params, np.load(tmp_path / 'p0' / 'params.npz')
  np.testing.assert_allclose(b['W'], a['W'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(b['b'], a['b'], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  'problem, command',
  [
    ('nan_in_the_second_half', 'train'),
    ('file_missing_on_one_process', 'train'),
    ('file_missing_on_one_process', 'lr_sweep'),
    ('corrupt_checkpoint_on_process_0', 'train'),
    ('workdir_refused_on_process_0', 'train'),  # it stopped alone; the other waited out Gloo's timeout
  ],
)
def test_one_process_with_bad_input_stops_every_process(tmp_path, problem, command):
  # Each streaming process checks only its own rows, loads only what it sees, and process 0 alone
  # prepares the outputs; the others must not wait for it at a collective (until Gloo's timeout, or
  # for ever once the processes are connected), but stop at once with a named error.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(96, 3)).astype(np.float32)
  if problem == 'nan_in_the_second_half':
    x[70, 2] = np.nan  # row 70 of the training split's 77: process 1 holds rows 39-76
  np.save(tmp_path / 'x.npy', x)
  np.save(tmp_path / 'y.npy', rng.integers(0, 3, 96))
  for i in range(2):
    (tmp_path / f'p{i}').mkdir()
  if problem == 'corrupt_checkpoint_on_process_0':  # in a workdir an earlier run of train made
    (tmp_path / 'p0' / '.linear_jax-workdir').write_text('A workdir of linear_jax train\n')
    (tmp_path / 'p0' / 'checkpoint.npz').write_bytes(b'not a checkpoint')
  if problem == 'workdir_refused_on_process_0':
    (tmp_path / 'p0' / 'notes.txt').write_text('mine')
  missing = problem == 'file_missing_on_one_process'
  extra = {
    'train': ['--batch_size=8', '--epochs=1', '--val_fraction=0', '--plots=false'],
    'lr_sweep': ['--num_lrs=2', '--epochs=1', '--val_fraction=0.2'],  # a sweep selects on validation
  }[command]
  (code0, err0), (code1, err1) = _two_processes(
    f'experiments.{command}',
    lambda i: [
      '--dataset=npy',
      f'--data_path={tmp_path / ("missing.npy" if missing and i == 1 else "x.npy")}',
      f'--labels_path={tmp_path}/y.npy',
      '--stream',
      *extra,
      *(['--resume'] if problem == 'corrupt_checkpoint_on_process_0' else []),
      '--quiet',
      f'--workdir={tmp_path}/p{i}',
    ],
    timeout=90,  # no waiting for a collective's timeout
  )
  assert code0 != 0 and code1 != 0
  bad, err, other = (0, err0, err1) if problem.endswith('on_process_0') else (1, err1, err0)
  found = {
    'nan_in_the_second_half': 'non-finite feature value(s); first at example 70, feature 2',
    'file_missing_on_one_process': 'missing.npy',
    'corrupt_checkpoint_on_process_0': 'checkpoint.npz',
    'workdir_refused_on_process_0': 'holds files this project did not write (notes.txt)',
  }[problem]
  said = {
    'nan_in_the_second_half': 'the checks before training',
    'file_missing_on_one_process': f'loading {tmp_path}/x.npy',
    'corrupt_checkpoint_on_process_0': f'{tmp_path}/p1: preparing the outputs',
    'workdir_refused_on_process_0': f'--workdir={tmp_path}/p1',
  }[problem]
  assert found in err, err[-2000:]
  assert f'{said}: process(es) [{bad}] found a problem' in other, other[-2000:]
  assert 'DEADLINE_EXCEEDED' not in err0 + err1
  assert not list((tmp_path / 'p0').glob('*.jsonl'))  # process 0 stopped before writing anything


def test_loading_leaves_jax_distributed_to_be_started_after():
  # The agreement of the processes (`base.together`) must not start JAX's backend by asking for
  # the process count: a script may load its data before `jax.distributed.initialize`.
  script = (
    'from jax._src import xla_bridge\n'
    'from linear_jax import experiment\n'
    "experiment.load_dataset(experiment.DataConfig(dataset='digits'))\n"
    'print(xla_bridge.backends_are_initialized())\n'
  )
  out = subprocess.run(
    [sys.executable, '-c', script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
  )
  assert out.returncode == 0, out.stderr
  assert out.stdout.split()[-1] == 'False'


def test_shard_rows_covers_every_row_once():
  from linear_jax.datapath import parallel  # pylint: disable=import-outside-toplevel

  for n, count in ((10, 3), (7, 2), (2, 4)):
    rows = [list(range(n))[parallel.shard_rows(n, i, count)] for i in range(count)]
    assert sum(rows, []) == list(range(n))


def test_distributed_flags_go_together():
  from linear_jax.datapath import parallel  # pylint: disable=import-outside-toplevel

  with pytest.raises(ValueError, match='go together'):
    parallel.initialize('127.0.0.1:1234', None, None)
  with pytest.raises(ValueError, match=r'process_id=2 must be in \[0, num_processes=2\)'):
    parallel.initialize('127.0.0.1:1234', 2, 2)
  with pytest.raises(ValueError, match='num_devices=4 but only 1 device'):
    parallel.make_mesh(4)
