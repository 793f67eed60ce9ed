"""`gradcheck_run.check_all`: the grid of checks the gradcheck command runs."""

import types

import jax
import pytest

from linear_jax.data import memory
from linear_jax.runs import gradcheck_run


def test_a_problem_that_cannot_fit_is_refused_with_its_figures_before_it_is_drawn(monkeypatch):
  # A 100,000 x 100,000 x in float64 is 80 GB: the process aborted ("Fatal Python error", exit 134).
  monkeypatch.setattr(memory, 'memory_available', lambda: 64 * 2**30)  # whatever this host has
  with pytest.raises(
    ValueError, match=r'^gradcheck: a random problem of 100,000 examples, 100,000 features'
  ) as e:
    gradcheck_run.check_all(['softmax'], ['l2'], ['sparse'], num_examples=100_000, num_features=100_000)
  assert 'GB of memory but only' in str(e.value) and 'use fewer --num_examples' in str(e.value)


def _accelerator(free_bytes):
  """A stand-in for an accelerator with `free_bytes` of its own memory free."""
  stats = {'bytes_limit': free_bytes + 2**30, 'bytes_in_use': 2**30}
  return types.SimpleNamespace(platform='gpu', memory_stats=lambda: stats)


def test_on_an_accelerator_its_own_free_memory_counts_not_the_hosts(monkeypatch):
  """A random problem of about 1.9 GB: refused on an accelerator with 1 GB free, whatever the host has;
  on one with 100 GB free it is accepted. On a CPU the host's memory counts."""
  monkeypatch.setattr(memory, 'memory_available', lambda: 64 * 2**30)
  assert memory.device_memory_available() == 64 * 2**30  # the suite's CPU device: the host's memory
  assert memory.device_memory_available(_accelerator(10**9)) == 10**9
  monkeypatch.setattr(jax, 'devices', lambda *a: [_accelerator(10**9)])
  with pytest.raises(ValueError, match='needs 1.92 GB of memory but only 1.00 GB is available') as e:
    gradcheck_run.check_all(['softmax'], ['l2'], ['sparse'], num_examples=20_000, num_features=3_000)
  assert str(e.value).startswith('gradcheck: a random problem of 20,000 examples, 3,000 features')
  monkeypatch.setattr(jax, 'devices', lambda *a: [_accelerator(100 * 10**9)])
  gradcheck_run._check_fits(20_000, 3_000, 10)  # noqa: SLF001 - the check alone: nothing is drawn


def test_a_small_problem_is_checked():
  reports = gradcheck_run.check_all(['softmax'], ['l2'], ['sparse'], bias_trick='no', num_examples=8)
  assert len(reports) == 1 and reports[0].passed
