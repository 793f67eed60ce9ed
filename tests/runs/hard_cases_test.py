"""Tests of the hard cases: the generators make the stated classes; only feature maps separate them."""

import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.data.features import histogram_features
from linear_jax.runs import hard_cases


@pytest.mark.parametrize('dim', [2, 5])
def test_generators_make_the_stated_classes(dim):
  p = hard_cases.parity(500, dim, seed=1)
  np.testing.assert_array_equal(p.y, np.sum(p.x > 0, axis=1) % 2)
  r = hard_cases.ring(500, dim, seed=1)
  norms = np.linalg.norm(r.x, axis=1)
  assert np.all((norms[r.y == 1] >= 1) & (norms[r.y == 1] <= 2))
  assert np.all((norms[r.y == 0] < 1) | (norms[r.y == 0] > 2))
  m = hard_cases.three_modes(500, dim, seed=1)
  dist = np.min(np.linalg.norm(m.x[:, None] - hard_cases._centres(dim)[None], axis=2), axis=1)
  assert np.all(dist[m.y == 0] > 3 * 0.45)  # background keeps away from the modes
  assert np.median(dist[m.y == 1]) < 0.45 * np.sqrt(dim) * 1.5
  for raw in (p, r, m):
    assert raw.x.shape == (500, dim) and 0.2 < raw.y.mean() < 0.8


@pytest.mark.parametrize('case', hard_cases.CASES)
def test_linear_stays_near_majority_and_feature_map_separates(case):
  linear = hard_cases.fit_case(case, 600, seed=2, features=False, epochs=40, grid=10)
  mapped = hard_cases.fit_case(case, 600, seed=2, features=True, epochs=100, grid=10)
  assert linear['accuracy'] <= linear['majority'] + 0.12, linear['accuracy']
  assert mapped['accuracy'] >= 0.95, mapped['accuracy']
  assert mapped['grid_scores'].shape == (10, 10)


def test_histogram_features_count_pixels():
  raw = data.Raw(
    np.array([[0.0, 0.0, 16.0, 8.0], [16.0, 16.0, 16.0, 16.0]]), np.array([0, 1]), 'class', 2, (2, 2)
  )
  h = histogram_features(raw, bins=2)
  np.testing.assert_allclose(h.x, [[0.5, 0.5], [0.0, 1.0]])
  colour = data.Raw(np.arange(24, dtype=float).reshape(2, 12), np.array([0, 1]), 'class', 2, (3, 2, 2))
  hc = histogram_features(colour, bins=4)
  assert hc.x.shape == (2, 12)
  np.testing.assert_allclose(hc.x.reshape(2, 3, 4).sum(-1), 1.0)  # one histogram per channel
  with pytest.raises(ValueError, match='histogram features need image data'):
    histogram_features(data.load('diabetes'))


def test_histograms_refuse_channels_last_images_and_bins_beyond_memory():
  # [N, 8, 8, 1] images were read as 8 channels of 8 x 1 (one histogram per image row, 77% on digits where
  # the intensity histogram gives ~25%); --bins=10**8 ended in a NumPy traceback asking for 1.3 TiB.
  digits = data.load('digits')
  last = data.Raw(digits.x, digits.y, 'class', 10, (8, 8, 1))
  with pytest.raises(
    ValueError, match=r'images of shape \[8, 8, 1\] look channels-last .* x.transpose\(0, 3, 1, 2\)'
  ):
    histogram_features(last, bins=4)
  with pytest.raises(
    ValueError,
    match=r'histogram features \(bins=100000000\): a histogram of 100,000,000 bins per image needs .* fewer',
  ):
    histogram_features(digits, bins=10**8)
  assert histogram_features(digits, bins=16).x.shape == (len(digits.x), 16)
  for shape in ((2, 5, 3), (3, 4, 4), (4, 8, 1)):  # [C, H, W] of narrow images, 4 channels at most: taken
    raw = data.Raw(np.zeros((3, int(np.prod(shape)))), np.arange(3), 'class', 3, shape)
    assert histogram_features(raw, bins=2).x.shape == (3, 2 * shape[0])
