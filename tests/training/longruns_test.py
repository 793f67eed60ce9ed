"""Long runs as they happen: real signals sent to real experiment processes at seeded random points.

Each test compares a run that was stopped (SIGTERM, SIGINT, SIGKILL, a second
signal while the checkpoint is written) and resumed with an uninterrupted run
of the same command: the outputs must be equal bit for bit.
"""

import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from linear_jax.training import preemption
from linear_jax.training import workdir as workdir_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT = 240


def _start(module, *args, env=None):
  return subprocess.Popen(
    [sys.executable, '-m', module, *args],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env={**os.environ, **(env or {})},
  )


def _finish(proc, timeout=TIMEOUT):
  try:
    out, err = proc.communicate(timeout=timeout)
  finally:
    if proc.poll() is None:  # never leave a process behind
      proc.kill()
      proc.communicate()
  return proc.returncode, out, err


def _run(module, *args):
  return _finish(_start(module, *args))


def _wait_until(proc, ready, what):
  deadline = time.time() + TIMEOUT
  while not ready():
    assert proc.poll() is None, f'the run ended before {what}: {proc.stderr.read()[-2000:]}'
    assert time.time() < deadline, f'timed out waiting for {what}'
    time.sleep(0.01)


def _holds_lock(folder, proc):
  """True once `proc` holds the lock of `folder`: its signal handlers are in place (longrun.guarded)."""

  def ready():
    try:
      return (folder / workdir_lib.LOCK).read_text().startswith(f'{proc.pid} ')
    except OSError:
      return False

  return ready


def _lines(path):
  try:
    return len(path.read_text().splitlines())
  except OSError:
    return 0


def _assert_stopped(rc, err, checkpoint):
  assert rc == preemption.EXIT_STATUS, err[-3000:]
  assert f'checkpoint saved to {checkpoint}' in err and '--resume' in err, err[-3000:]
  assert len([line for line in err.splitlines() if line.startswith('Stopped by')]) == 1


def _json_without_seconds(path):
  out = json.loads(path.read_text())
  out.pop('seconds', None)
  for row in out.get('rows', []):
    row.pop('seconds', None)
  return out


TRAIN = ['--epochs=20', '--tol_on=none', '--batch_size=8', '--checkpoint_every=5', '--plots=false', '--quiet']


def test_train_stopped_while_compiling_and_mid_epoch_resumes_bit_exact(tmp_path):
  rc, _, err = _run('experiments.train', *TRAIN, f'--workdir={tmp_path}/whole')
  assert rc == 0, err
  work = tmp_path / 'part'
  # As soon as the run holds its workdir (loading data, compiling): the first epoch ends whole.
  proc = _start('experiments.train', *TRAIN, f'--workdir={work}')
  _wait_until(proc, _holds_lock(work, proc), 'the run started')
  proc.send_signal(signal.SIGTERM)
  rc, _, err = _finish(proc)
  _assert_stopped(rc, err, work / 'checkpoint.npz')
  # Ctrl-C while a checkpoint (a seeded random one) is being written, the run holding its workdir:
  # a second run is refused meanwhile.
  saves = random.Random(1).randrange(1, 4)  # resumed from epoch 1, so save k is after epoch 5k (< 20)
  marker = tmp_path / 'paused'
  env = {'LINEAR_JAX_CHECKPOINT_PAUSE': f'{saves}:{marker}'}
  proc = _start('experiments.train', *TRAIN, f'--workdir={work}', '--resume', env=env)
  _wait_until(proc, marker.exists, 'the paused checkpoint write')
  rc2, _, err2 = _run('experiments.train', *TRAIN, f'--workdir={work}')
  assert rc2 == 1 and f'--workdir={work} is in use by another run (process {proc.pid} on' in err2, err2
  proc.send_signal(signal.SIGINT)
  time.sleep(0.2)
  marker.unlink()
  rc, _, err = _finish(proc)
  _assert_stopped(rc, err, work / 'checkpoint.npz')
  assert f'after epoch {5 * saves} of 20' in err
  rc, _, err = _run('experiments.train', *TRAIN, f'--workdir={work}', '--resume')
  assert rc == 0, err
  a, b = np.load(tmp_path / 'whole' / 'params.npz'), np.load(work / 'params.npz')
  np.testing.assert_array_equal(a['W'], b['W'])
  np.testing.assert_array_equal(a['b'], b['b'])
  epochs = [json.loads(x)['epoch'] for x in (work / 'metrics.jsonl').read_text().splitlines()]
  assert epochs == list(range(1, 21))


SWEEP = [
  '--num_lrs=4',
  '--lr_min=0.01',
  '--lr_max=30',
  '--regs=0,1e-3',
  '--seeds=0,1',
  '--chunk_size=3',
  '--epochs=20',
  '--batch_size=8',
  '--optimizer=momentum',
  '--quiet',
]


@pytest.fixture(scope='module')
def whole_sweep(tmp_path_factory):
  folder = tmp_path_factory.mktemp('whole_sweep')
  rc, _, err = _run('experiments.lr_sweep', *SWEEP, '--checkpoint_every=4', f'--workdir={folder}')
  assert rc == 0, err
  return folder


def _assert_same_sweep(a, b):
  assert (a / 'sweep.csv').read_text() == (b / 'sweep.csv').read_text()
  assert (a / 'settings.csv').read_text() == (b / 'settings.csv').read_text()
  assert _json_without_seconds(a / 'sweep.json') == _json_without_seconds(b / 'sweep.json')


def test_lr_sweep_killed_at_seeded_points_resumes_bit_exact(whole_sweep, tmp_path):
  rng = random.Random(18)  # SIGTERM after 0.37 s, SIGKILL after 1.0 s, SIGTERM after 2.86 s, then to the end
  work = tmp_path / 'part'
  legs = []
  while True:
    resume = ['--resume'] if legs else []
    proc = _start('experiments.lr_sweep', *SWEEP, '--checkpoint_every=4', f'--workdir={work}', *resume)
    if len(legs) == 4:  # the last leg runs to the end
      rc, _, err = _finish(proc)
      assert rc == 0, err
      break
    sig, delay = rng.choice([signal.SIGTERM, signal.SIGKILL, signal.SIGINT]), rng.uniform(0.0, 3.0)
    _wait_until(proc, _holds_lock(work, proc), 'the run started')
    time.sleep(delay)
    proc.send_signal(sig)
    rc, _, err = _finish(proc)
    legs.append((sig.name, round(delay, 2), rc))
    # Finished before the signal; or after its work, on the way out, where its handlers are gone and a
    # SIGTERM takes its default action (a signal while the run held the lock is handled).
    if rc == 0 or (sig != signal.SIGKILL and rc == -sig and (work / 'sweep.json').exists()):
      break
    if sig == signal.SIGKILL:
      assert rc == -signal.SIGKILL
    else:
      _assert_stopped(rc, err, work / 'sweep_checkpoint.npz')
  _assert_same_sweep(whole_sweep, work)
  assert any(rc == preemption.EXIT_STATUS for _, _, rc in legs), legs


def test_second_signal_during_checkpoint_write_corrupts_nothing(whole_sweep, tmp_path):
  work, marker = tmp_path / 'part', tmp_path / 'paused'
  # The 3rd save (after epoch 12 of the first chunk) pauses with its temporary file written.
  env = {'LINEAR_JAX_CHECKPOINT_PAUSE': f'3:{marker}'}
  proc = _start('experiments.lr_sweep', *SWEEP, '--checkpoint_every=4', f'--workdir={work}', env=env)
  _wait_until(proc, marker.exists, 'the paused checkpoint write')
  proc.send_signal(signal.SIGTERM)
  time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)  # the second signal, during the write
  time.sleep(0.2)
  marker.unlink()  # let the write go on
  rc, _, err = _finish(proc)
  _assert_stopped(rc, err, work / 'sweep_checkpoint.npz')
  assert 'SIGTERM again: already stopping' in err
  assert not [p for p in work.iterdir() if p.name.startswith('.tmp-')]
  meta = json.loads(str(np.load(work / 'sweep_checkpoint.npz', allow_pickle=False)['meta']))
  assert (meta['done'], meta['epoch']) == (0, 12)
  rc, _, err = _run('experiments.lr_sweep', *SWEEP, '--checkpoint_every=4', f'--workdir={work}', '--resume')
  assert rc == 0, err
  _assert_same_sweep(whole_sweep, work)


def test_lr_sweep_resume_with_other_settings_is_refused(whole_sweep, tmp_path):
  rc, _, err = _run(
    'experiments.lr_sweep', *SWEEP, '--epochs=21', f'--workdir={whole_sweep}', '--resume', '--quiet'
  )
  assert rc == 1 and 'written by a sweep with other settings (epochs); cannot resume' in err, err
  assert (whole_sweep / 'sweep.csv').exists() and (whole_sweep / 'sweep.json').exists()  # nothing lost


SEARCH = [
  '--dataset=blobs',
  '--num_features=3',
  '--low_dim=false',
  '--budget=600',  # about 0.5 s a method: a stop lands inside one
  '--population=20',
  '--proposals=5',
  '--checkpoint_every=100',
]


def test_search_stopped_mid_method_resumes_bit_exact(tmp_path):
  rc, _, err = _run('experiments.search', *SEARCH, f'--workdir={tmp_path}/whole')
  assert rc == 0, err
  work = tmp_path / 'part'
  proc = _start('experiments.search', *SEARCH, f'--workdir={work}')
  # Stop once the checkpoint holds a method in flight (not at a method's end).
  ckpt = work / 'search_checkpoint.npz'

  def in_flight():
    try:
      meta = json.loads(str(np.load(ckpt, allow_pickle=False)['meta']))
    except Exception:  # noqa: BLE001 - not written yet, or being replaced
      return False
    return meta['search']['current'] is not None and len(meta['search']['done']) >= 1

  _wait_until(proc, in_flight, 'a method in flight')
  proc.send_signal(signal.SIGTERM)
  rc, _, err = _finish(proc)
  _assert_stopped(rc, err, ckpt)
  rc, _, err = _run('experiments.search', *SEARCH, f'--workdir={work}', '--resume')
  assert rc == 0, err
  a, b = (
    _json_without_seconds(tmp_path / 'whole' / 'search.json'),
    _json_without_seconds(work / 'search.json'),
  )
  assert a == b


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


PARALLEL = [
  '--dataset=blobs',
  '--num_examples=301',
  '--num_features=4',
  '--full_batch',
  '--epochs=80',
  '--tol_on=none',  # a fixed count: the test stops and resumes at known epochs
  '--plots=false',
  '--quiet',
  '--learning_rate=0.5',
  '--optimizer=momentum',
  '--parallel=shard_map',
  '--checkpoint_every=7',
]


def _two_processes(work, *extra):
  port = _free_port()
  return [
    _start(
      'experiments.train',
      *PARALLEL,
      *extra,
      f'--coordinator_address=127.0.0.1:{port}',
      '--num_processes=2',
      f'--process_id={i}',
      f'--workdir={work}',
    )
    for i in range(2)
  ]


def test_two_processes_stop_together_and_resume_bit_exact(tmp_path):
  whole = _two_processes(tmp_path / 'whole')
  for p in whole:
    rc, _, err = _finish(p)
    assert rc == 0, err[-3000:]
  work = tmp_path / 'part'
  procs = _two_processes(work)
  stop_after = random.Random(2).randrange(10, 30)
  _wait_until(procs[0], lambda: _lines(work / 'metrics.jsonl') >= stop_after, f'epoch {stop_after}')
  procs[1].send_signal(signal.SIGTERM)  # one process is told; both must stop at the same epoch
  results = [_finish(p) for p in procs]
  for rc, _, err in results:
    _assert_stopped(rc, err, work / 'checkpoint.npz')
  # One process cannot continue what two began: each trained on its own shard of the rows.
  rc, _, err = _run('experiments.train', *PARALLEL, f'--workdir={work}', '--resume')
  assert rc == 1 and 'written by a run of 2 process(es) but this run has 1' in err, err[-3000:]
  for p in _two_processes(work, '--resume'):
    rc, _, err = _finish(p)
    assert rc == 0, err[-3000:]
  a, b = np.load(tmp_path / 'whole' / 'params.npz'), np.load(work / 'params.npz')
  np.testing.assert_array_equal(a['W'], b['W'])
  np.testing.assert_array_equal(a['b'], b['b'])
  assert (tmp_path / 'whole' / 'metrics.jsonl').read_text().count('\n') == 80
  epochs = [json.loads(x)['epoch'] for x in (work / 'metrics.jsonl').read_text().splitlines()]
  assert epochs == list(range(1, 81))
