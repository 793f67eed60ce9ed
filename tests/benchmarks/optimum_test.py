"""The optimum benchmark section renders what it measured (the measuring itself is too slow for CI)."""

import numpy as np

from benchmarks import optimum as bench_optimum


def test_embedding_like_data_is_standardized_and_learnable():
  x, y = bench_optimum.embedding_like(2000, 32, 5, seed=0)
  assert x.shape == (2000, 32) and x.dtype == np.float32 and set(np.unique(y)) == set(range(5))
  np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(x.std(0), 1, atol=1e-4)
  means = np.stack([x[y == c].mean(0) for c in range(5)])
  assert np.linalg.norm(means - means.mean(0), axis=1).min() > 0.1  # the classes differ


def test_markdown_reports_every_part_with_its_ratios():
  results = {
    'machine': {'cpu': 'x86_64', 'cores': 2, 'device': 'cpu', 'jax': '0'},
    'quick': True,
    'repeats': 1,
    'equality': [
      {
        'dataset': 'digits',
        'loss': 'softmax',
        'weights': 'balanced',
        'peer': 'LogisticRegression(C=1)',
        'f_ours': 0.5,
        'f_sklearn': 0.5000001,
        'relative_difference': 2e-7,
      }
    ],
    'single_fit': {
      'shape': '10×2×10 float32',
      'tol': 1e-4,
      'seconds_ours': 0.5,
      'seconds_sklearn': 2.0,
      'seconds_sklearn_default_threads': 3.0,
      'speedup': 4.0,
      'iterations_ours': 10,
      'fevals_ours': 11,
      'iterations_sklearn': 12,
      'relative_difference': 1e-6,
    },
    'path': {
      'shape': '10×2×10 float32',
      'regs': [1.0] * 8,
      'tol': 1e-4,
      'seconds': {
        'warm': 1.0,
        'batched': 1.5,
        'sequential': 2.0,
        'naive_vmap': 9.0,
        'sklearn': 6.0,
        'sklearn_warm': 5.0,
      },
      'max_relative_difference': 1e-5,
      'warm_evaluations': 100,
      'batched_evaluations': 40,
      'sequential_evaluations': [30] * 8,
      'naive_evaluations_max': 60,
    },
    'default_run': [
      {
        'dataset': 'digits',
        'ours': 0.96,
        'sklearn': 0.965,
        'points_behind': 0.5,
        'epochs': 300,
        'stop_reason': 'converged',
      }
    ],
  }
  text = bench_optimum.markdown(results)
  assert '**4.0×**' in text and '| 8 LogisticRegression fits | 6.00 | 6.0× |' in text
  assert '| vmap of optax L-BFGS over the 8 regs | 9.00 | 9.0× |' in text
  assert '| lock-step batched L-BFGS (paths.py), one program | 1.50 | 1.5× |' in text
  assert 'Evaluations: warm-started 100 in all, batched 40' in text
  assert '| digits | 96.0% | 96.5% | +0.5 | 300 (converged) |' in text
  assert '2.0e-07' in text
