"""`gradcheck_run.check_all`: the grid of checks the gradcheck command runs."""

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


def test_a_small_problem_is_checked():
  reports = gradcheck_run.check_all(['softmax'], ['l2'], ['sparse'], bias_trick='no', num_examples=8)
  assert len(reports) == 1 and reports[0].passed
