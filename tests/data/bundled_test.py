"""The bundled datasets, read without importing scikit-learn, equal scikit-learn's own loaders."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn import datasets as sk

from linear_jax.data import bundled
from linear_jax.data import datasets


@pytest.mark.parametrize(
  'name, reference',
  [('digits', sk.load_digits), ('breast_cancer', sk.load_breast_cancer), ('diabetes', sk.load_diabetes)],
)
def test_each_dataset_equals_scikit_learns_loader(name, reference):
  x, y = getattr(bundled, name)()
  want = reference()
  np.testing.assert_array_equal(y, want.target)
  np.testing.assert_allclose(x, want.data, rtol=1e-12, atol=1e-15)
  assert x.dtype == np.float64 and x.shape == want.data.shape
  raw = datasets.load_builtin(name)
  np.testing.assert_array_equal(raw.x, x)
  if name == 'breast_cancer':
    assert raw.class_names == tuple(want.target_names)


def test_loading_digits_imports_neither_scikit_learn_nor_scipy():
  code = (
    'import sys; from linear_jax.data import datasets; datasets.load_builtin("digits"); '
    'print(sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "matplotlib")))'
  )
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
  assert out.strip() == '[]'
