"""Tests of linear_jax.preemption: signals become a flag; training stops at an epoch boundary."""

import os
import signal

import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.optim import config
from linear_jax.training import preemption
from linear_jax.training import train


@pytest.fixture(autouse=True)
def _fresh():
  preemption.reset()
  yield
  preemption.reset()


def test_signals_set_the_flag_and_handlers_come_back():
  # Python's own Ctrl-C, whatever this process inherited: started in the background by a script
  # (`cmd &`, nohup), pytest and its workers ignore SIGINT (conftest.py puts the inherited one back).
  signal.signal(signal.SIGINT, signal.default_int_handler)
  before = signal.getsignal(signal.SIGTERM)
  with preemption.handling():
    assert not preemption.requested()
    os.kill(os.getpid(), signal.SIGTERM)  # would end the test process without the handler
    os.kill(os.getpid(), signal.SIGINT)  # a second signal is only noted
    assert preemption.requested() and preemption.signal_name() == 'SIGTERM'
    assert preemption.stop_requested()
  assert signal.getsignal(signal.SIGTERM) is before
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  with pytest.raises(KeyboardInterrupt):  # outside the block Ctrl-C is Ctrl-C again
    os.kill(os.getpid(), signal.SIGINT)


def test_fit_stops_after_the_epoch_in_flight_and_resumes_bit_exact(tmp_path):
  ds = data.prepare(data.blobs(200, 4, 3, seed=3), 'blobs', seed=3)
  cfg = config.TrainConfig(epochs=6, batch_size=32, optimizer='adam', learning_rate=0.01)
  whole = train.fit(cfg, ds)

  def on_epoch(metrics):
    if metrics['epoch'] == 2:  # not a checkpoint epoch: the stop itself must write one
      os.kill(os.getpid(), signal.SIGTERM)

  with preemption.handling():
    first = train.fit(cfg, ds, workdir=str(tmp_path), on_epoch=on_epoch, checkpoint_every=5)
  assert first.interrupted and len(first.history) == 2  # stopped at the epoch boundary
  preemption.reset()
  resumed = train.fit(cfg, ds, workdir=str(tmp_path), resume=True)
  assert resumed.resumed_from == 2
  np.testing.assert_array_equal(resumed.params.W, whole.params.W)
  np.testing.assert_array_equal(resumed.params.b, whole.params.b)
  assert resumed.history[-1]['val_accuracy'] == whole.history[-1]['val_accuracy']
