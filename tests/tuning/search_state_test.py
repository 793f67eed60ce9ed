"""Tests of resumable search: stopped mid-method at seeded points, resumed bit for bit equal."""

import random
import signal

import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.optim import config
from linear_jax.training import preemption
from linear_jax.tuning import search
from linear_jax.tuning import search_state


@pytest.fixture(autouse=True)
def _fresh():
  preemption.reset()
  yield
  preemption.reset()


class _StopAt(search_state.Segments):
  """Segments that receive SIGTERM after the slices listed in `stops` (counted over the whole search)."""

  def __init__(self, *args, stops=(), **kwargs):
    super().__init__(*args, **kwargs)
    self.stops, self.count = set(stops), 0

  def run(self, segment, carry, keys, cost):
    def counted(carry, keys):
      out = segment(carry, keys)
      self.count += 1
      if self.count in self.stops:
        signal.raise_signal(signal.SIGTERM)
      return out

    return super().run(counted, carry, keys, cost)


def test_search_stopped_at_a_seeded_point_resumes_bit_exact(tmp_path):
  ds = data.prepare(data.blobs(200, 3, 3, seed=4), 'blobs', seed=4)
  cfg = config.TrainConfig(epochs=1, learning_rate=0.3)
  kwargs = {'population': 20, 'elite': 2, 'proposals': 5, 'batch_size': 32}
  ident = {'what': 'test'}
  whole_rows, whole_curves = search.compare(
    cfg, ds, 400, **kwargs, segments=search_state.Segments(str(tmp_path / 'w.npz'), ident, every=90)
  )
  # Slices of 90 evaluations: random search 5, local search 5, the genetic algorithm 5 (of 18
  # children), gradient descent 2 + 2 (of 45 epochs). Stop inside one method, resume, and stop once
  # more at a method's end.
  stop = random.Random(7).randrange(2, 14)
  path = str(tmp_path / search_state.FILE)
  segs = _StopAt(path, ident, every=90, stops=[stop])
  with pytest.raises(preemption.Stopped), preemption.handling():
    search.compare(cfg, ds, 400, **kwargs, segments=segs)
  preemption.reset()
  segs = _StopAt(path, ident, every=90, resume=True)
  rows, curves = search.compare(cfg, ds, 400, **kwargs, segments=segs)
  strip = lambda rs: [{k: v for k, v in r.items() if k != 'seconds'} for r in rs]
  assert strip(rows) == strip(whole_rows)
  for label, (evals, loss) in whole_curves.items():
    np.testing.assert_array_equal(curves[label][0], evals)
    np.testing.assert_array_equal(curves[label][1], loss)


def test_resume_with_other_settings_is_refused_naming_them(tmp_path):
  path = str(tmp_path / search_state.FILE)
  search_state.Segments(path, {'budget': 100, 'seed': 0})._save(None)
  with pytest.raises(ValueError, match=r'other settings \(budget\)'):
    search_state.Segments(path, {'budget': 200, 'seed': 0}, resume=True)
  assert search_state.Segments(path, {'budget': 200, 'seed': 0}).done == {}  # no --resume: starts over
