"""Memory that scales with classes x features is estimated and refused before anything is allocated.

The free memory is set (`resident.memory_budget`), so every test is the same
on any machine, and nothing large is ever allocated: the estimate reads
shapes only.
"""

import jax
import numpy as np
import pytest

from linear_jax.data import records
from linear_jax.datapath import model_memory
from linear_jax.datapath import resident
from linear_jax.optim import config
from linear_jax.optim import step
from linear_jax.training import train
from linear_jax.tuning import sweep


def _dataset(n, d, num_classes, name='wide'):
  """`n` rows of `d` features (70% train, 15% val, 15% test), labels 0..n-1 modulo `num_classes`."""
  x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
  y = (np.arange(n) % num_classes).astype(np.int32)
  a, b = int(0.7 * n), int(0.85 * n)
  return records.Dataset(
    name, x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], 'class', num_classes, np.zeros(d), np.ones(d)
  )


@pytest.fixture
def free_memory(monkeypatch):
  def set_to(num_bytes):
    monkeypatch.setattr(resident, 'memory_budget', lambda device=None: num_bytes)

  return set_to


def test_the_state_estimate_is_the_bytes_init_state_allocates():
  """`state_bytes` (shapes only) against the arrays `init_state` really makes: sgd, momentum, adam."""
  for optimizer, copies in (('sgd', 0), ('momentum', 1), ('adam', 2)):
    cfg = config.TrainConfig(optimizer=optimizer, learning_rate=0.1)
    params, opt_state = step.init_state(cfg, 7, 5, step.hparams(cfg), 1)
    real = [sum(a.nbytes for a in jax.tree.leaves(t)) for t in (params, opt_state)]
    assert model_memory.state_bytes(cfg, 7, 5) == tuple(real)
    assert copies * real[0] <= real[1] <= copies * real[0] + 64  # the counters and injected scalars


def test_fifty_thousand_classes_on_a_megabyte_are_refused_with_the_figures_and_a_block_size_that_fits(
  free_memory,
):
  """50,000 rows x 5 features (1 MB), one class each: the training split's scores alone are 35,000 x
  50,000 floats, twice (it held 14 GB in a run); refused before any allocation, then the advice fits."""
  ds = _dataset(50_000, 5, 50_000)
  free_memory(8e9)
  cfg = config.TrainConfig(learning_rate=0.1)
  with pytest.raises(ValueError) as e:
    train.check_fit(cfg, ds)
  msg = str(e.value)
  assert msg.startswith('wide: 50,000 outputs x 5 features (')
  scores = 2 * 35_000 * 50_000 * 4
  where = 'the 35,000 rows of the train split, evaluated at once [35,000 x 50,000]'
  assert f'the scores of {where} {scores / 1e9:.2f} GB' in msg
  assert 'but only 8.00 GB is available; score fewer rows at once: --stream --block_rows=' in msg
  assert 'fewer classes (the class count is 1 + the largest label' in msg
  rows = int(msg.split('--block_rows=')[1].split(' ', maxsplit=1)[0].replace(',', ''))
  assert 1_000 < rows < 35_000
  streamed = config.TrainConfig(learning_rate=0.1, stream=True, block_rows=rows)
  assert train.check_fit(streamed, ds).streamed  # the advice is enough


def test_a_wide_model_names_its_optimizer_state_and_the_optimizer_without_one(free_memory):
  """200 rows x 1,000 features claiming 50,000 classes: W and b are 200 MB, Adam keeps two more copies."""
  ds = _dataset(200, 1_000, 50_000)
  w = 50_000 * 1_001 * 4  # W and b
  free_memory(1.5e9)
  with pytest.raises(ValueError) as e:
    train.check_fit(config.TrainConfig(optimizer='adam', learning_rate=0.1), ds)
  msg = str(e.value)
  assert f'W [50,000 x 1,000], its gradient and update {3 * w / 1e6:.1f} MB' in msg
  assert f'the adam state {2 * w / 1e6:.1f} MB' in msg
  assert 'the model itself is too large' in msg and '(--optimizer=sgd keeps no state beside W)' in msg
  train.check_fit(config.TrainConfig(optimizer='sgd', learning_rate=0.1), ds)  # 1.2 GB fits


def test_lbfgs_and_a_sweep_refuse_rather_than_crash(free_memory):
  """L-BFGS keeps two copies of W per curvature pair (at least 10 pairs); a sweep checks its first model."""
  ds = _dataset(200, 1_000, 50_000)
  free_memory(3e9)
  with pytest.raises(ValueError, match=r'the lbfgs state 4.00 GB'):
    train.check_fit(config.TrainConfig(optimizer='lbfgs', learning_rate=0.1), ds)
  free_memory(0.5e9)
  with pytest.raises(
    ValueError, match=r'wide: 50,000 outputs x 1,000 features .* only 500.0 MB is available'
  ):
    sweep.run_sweep(config.TrainConfig(learning_rate=0.1), ds, [{'learning_rate': 0.1, 'reg': 0.0}])
