"""A diverged run says what was found: the data's or the initialization's scale, bad input, or the step."""

import numpy as np
import pytest

from linear_jax.data import datasets as data_lib
from linear_jax.data import records
from linear_jax.datapath import preparation
from linear_jax.optim import config
from linear_jax.optim import results
from linear_jax.training import train


def _regression(y_scale=1.0, n=80):
  x = np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5]) * y_scale + 3 * y_scale).astype(np.float32)
  a, b = int(0.7 * n), int(0.85 * n)
  return records.Dataset(
    'reg', x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], 'real', None, np.zeros(3), np.ones(3)
  )


def test_targets_near_float32s_largest_blame_the_data_not_a_tiny_learning_rate():
  """Targets near 1e38 at --learning_rate=1e-30: the first loss is already inf in float32."""
  cfg = config.TrainConfig(loss='l2', learning_rate=1e-30, epochs=2)
  with np.errstate(over='ignore'):
    assert not np.isfinite(np.float32(3e37) ** 2)  # the squared error of one such target
  with pytest.raises(results.Diverged) as e:
    train.fit(cfg, _regression(1e37))
  msg = str(e.value)
  assert 'the initial loss, before any step, was already inf: the learning rate is not the cause' in msg
  assert "the data's scale is the cause (the largest |target| of the training rows is" in msg
  assert 'smaller --learning_rate' not in msg


def test_a_huge_init_scale_is_named():
  cfg = config.TrainConfig(loss='l2', learning_rate=0.01, init_scale=1e30, epochs=2)
  with pytest.raises(
    results.Diverged, match=r'--init_scale=1e\+30 \(the default is 0\.001\) makes the initial'
  ):
    train.fit(cfg, _regression())


def test_a_too_large_step_still_says_so_and_how_the_default_finds_one():
  cfg = config.TrainConfig(loss='l2', learning_rate=50.0, epochs=20, batch_size=8)
  with pytest.raises(results.Diverged) as e:
    train.fit(cfg, _regression())
  assert str(e.value).endswith(
    "try a smaller --learning_rate (the command line's default, --learning_rate=auto, derives a stable step)."
  )


def test_a_streamed_file_overwritten_with_nan_mid_run_is_named(tmp_path):
  """The file is checked finite before training; NaN written into it after epoch 1 is read by epoch 2."""
  x = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
  np.save(tmp_path / 'x.npy', x)
  raw = records.Raw(
    x=np.load(tmp_path / 'x.npy', mmap_mode='r'),
    y=(x[:, 0] > 0).astype(np.int64),
    kind='class',
    num_classes=2,
    extra={data_lib.WHERE: (str(tmp_path / 'x.npy'),) * 2},  # as the command line names the file
  )
  kw = dict(seed=0, dtype=np.float32, stream_file=True, progress=None, class_weight=None)
  ds = preparation.prepare(raw, 'x.npy', 0.1, 0.2, 'standardize', **kw)

  def overwrite(metrics):
    if metrics['epoch'] == 1:
      f = np.load(tmp_path / 'x.npy', mmap_mode='r+')
      f[100:120] = np.nan
      f.flush()

  cfg = config.TrainConfig(stream=True, learning_rate=0.1, epochs=3, batch_size=32)
  with pytest.raises(results.Diverged) as e:
    train.fit(cfg, ds, on_epoch=overwrite)
  msg = str(e.value)
  assert 'loss became non-finite at step' in msg and '(epoch 2)' in msg
  assert f'a non-finite value was read mid-run from {tmp_path / "x.npy"}, which was checked finite' in msg
  assert 'smaller --learning_rate' not in msg
