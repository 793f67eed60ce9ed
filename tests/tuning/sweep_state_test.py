"""Tests of sweep checkpoints: a seeded loop over stop points, each resume bit for bit equal."""

import dataclasses
import random
import signal

import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.optim import config
from linear_jax.training import preemption
from linear_jax.tuning import sweep
from linear_jax.tuning import sweep_state

CFG = config.TrainConfig(epochs=5, batch_size=16, optimizer='momentum', explode_factor=2.0)
# lr 40 diverges: divergence marks and frozen models must survive a resume too.
SETTINGS = sweep.grid([0.01, 0.3, 40.0], [0.0, 1e-2], seeds=[0, 1])
CHUNK = 4  # seed 0: models 1-4 and 5-6, seed 1: models 7-10 and 11-12


@pytest.fixture(scope='module')
def blobs():
  return data.prepare(data.blobs(150, 4, 3, seed=1), 'blobs', seed=1)


@pytest.fixture(scope='module')
def whole(blobs):
  return sweep.run_sweep(CFG, blobs, SETTINGS, chunk_size=CHUNK)


@pytest.fixture(autouse=True)
def _fresh():
  preemption.reset()
  yield
  preemption.reset()


def _assert_same(a, b):
  assert a.rows() == b.rows()
  np.testing.assert_array_equal(a.params.W, b.params.W)
  np.testing.assert_array_equal(a.params.b, b.params.b)
  np.testing.assert_array_equal(a.diverged_at, b.diverged_at)
  assert len(a.history) == len(b.history)
  for ha, hb in zip(a.history, b.history, strict=True):
    assert ha.keys() == hb.keys()
    for m in ha:
      np.testing.assert_array_equal(ha[m], hb[m])


def test_seeded_stop_points_resume_bit_exact(blobs, whole, tmp_path):
  assert (whole.diverged_at > 0).any() and (whole.diverged_at < 0).any()
  rng = random.Random(16)
  path = str(tmp_path / sweep_state.FILE)
  for trial in range(6):
    every = rng.choice([1, 2, 3, 10])
    stops = sorted(rng.sample([(c, e) for c in (0, 4, 6, 10) for e in range(1, 6)], rng.choice([1, 2])))
    pending = list(stops)
    result, legs = None, 0
    while result is None:
      legs += 1

      def on_epoch(epoch, start, k, total, metrics, dead):
        if pending and (start, epoch) == pending[0]:
          pending.pop(0)
          signal.raise_signal(signal.SIGTERM)  # a real signal, turned into a flag by the handler

      preemption.reset()
      try:
        with preemption.handling():
          result = sweep.run_sweep(
            CFG,
            blobs,
            SETTINGS,
            chunk_size=CHUNK,
            on_epoch=on_epoch,
            checkpoint_path=path,
            checkpoint_every=every,
            resume=legs > 1,
          )
      except preemption.Stopped as e:
        assert e.checkpoint == path
    last = (10, CFG.epochs)  # a signal after the last epoch of all finds nothing left to stop
    assert legs == len([s for s in stops if s != last]) + 1, (trial, stops)
    _assert_same(result, whole)


def test_resume_with_other_settings_is_refused_naming_them(blobs, tmp_path):
  path = str(tmp_path / sweep_state.FILE)
  sweep.run_sweep(CFG, blobs, SETTINGS[:4], checkpoint_path=path)
  cases = [
    (dataclasses.replace(CFG, epochs=6), SETTINGS[:4], blobs, r'other settings \(epochs\)'),
    (CFG, sweep.grid([0.02, 0.3], [0.0, 1e-2]), blobs, r'\(learning_rate values'),
    (
      CFG,
      SETTINGS[:4],
      data.prepare(data.blobs(150, 4, 3, seed=2), 'blobs', seed=1),
      r"the train split's features \(other values\)",
    ),
  ]
  for cfg, settings, ds, message in cases:
    with pytest.raises(ValueError, match=message):
      sweep.run_sweep(cfg, ds, settings, checkpoint_path=path, resume=True)
  (tmp_path / 'bad.npz').write_bytes(b'not a checkpoint')
  with pytest.raises(ValueError, match='bad.npz: not a readable checkpoint'):
    sweep.run_sweep(CFG, blobs, SETTINGS[:4], checkpoint_path=str(tmp_path / 'bad.npz'), resume=True)


def test_signal_at_seeded_moments_abandons_the_epoch_in_flight_and_resumes_bit_exact(blobs, whole, tmp_path):
  import os  # pylint: disable=import-outside-toplevel
  import threading  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel

  path = str(tmp_path / sweep_state.FILE)
  t = time.perf_counter()
  sweep.run_sweep(CFG, blobs, SETTINGS, chunk_size=CHUNK, checkpoint_path=path, checkpoint_every=2)
  seconds = time.perf_counter() - t
  rng = random.Random(3)
  for _ in range(3):
    preemption.reset()
    timer = threading.Timer(rng.uniform(0, seconds), os.kill, (os.getpid(), signal.SIGTERM))
    with preemption.handling():  # the timer is stopped before the handlers go
      timer.start()
      try:
        sweep.run_sweep(CFG, blobs, SETTINGS, chunk_size=CHUNK, checkpoint_path=path, checkpoint_every=2)
      except preemption.Stopped:
        pass
      finally:
        timer.cancel()
        timer.join()
    preemption.reset()
    resumed = sweep.run_sweep(
      CFG, blobs, SETTINGS, chunk_size=CHUNK, checkpoint_path=path, checkpoint_every=2, resume=True
    )
    _assert_same(resumed, whole)
