"""The real datasets that ship with scikit-learn, read from its files without importing it.

Importing scikit-learn (and SciPy with it) to read 1,797 rows of digits took
about 1.5 s, most of a default run's start. Its data files are plain CSV in
the installed package (`sklearn/datasets/data/`): this module finds the
package with `importlib.util.find_spec` and reads them as its loaders do
(`load_digits`, `load_breast_cancer`, `load_diabetes(scaled=True)`); the tests
compare every array with scikit-learn's own loaders.
"""

import csv
import gzip
import importlib.util
import os

import numpy as np

BREAST_CANCER_CLASSES = ('malignant', 'benign')  # scikit-learn's target_names


def data_dir():
  """The folder of scikit-learn's bundled data files; a `ValueError` if scikit-learn is not installed."""
  spec = importlib.util.find_spec('sklearn')
  if spec is None or not spec.submodule_search_locations:
    raise ValueError('the built-in datasets are the ones scikit-learn ships: pip install scikit-learn.')
  return os.path.join(list(spec.submodule_search_locations)[0], 'datasets', 'data')


def _gzip_csv(name, delimiter=','):
  with gzip.open(os.path.join(data_dir(), name), 'rt', encoding='utf-8') as f:
    return np.loadtxt(f, delimiter=delimiter, ndmin=2)


def digits():
  """`(x [1797, 64] float64, y [1797] int64)`: 8 × 8 images of handwritten digits, values 0 to 16."""
  data = _gzip_csv('digits.csv.gz')
  return data[:, :-1], data[:, -1].astype(np.int64)


def breast_cancer():
  """`(x [569, 30] float64, y [569] int64)`: 0 malignant, 1 benign."""
  with open(os.path.join(data_dir(), 'breast_cancer.csv'), encoding='utf-8') as f:
    rows = csv.reader(f)
    n, d = (int(v) for v in next(rows)[:2])
    table = np.array([r for r in rows], dtype=np.float64)
  if table.shape != (n, d + 1):
    raise ValueError(f'{f.name}: expected {n} rows of {d + 1} values, read {table.shape}.')
  return table[:, :-1], table[:, -1].astype(np.int64)


def diabetes():
  """`(x [442, 10] float64, y [442] float64)`: each feature centered and scaled to unit norm
  (scikit-learn's `scaled=True`: divided by its standard deviation and by √n)."""
  x = _gzip_csv('diabetes_data_raw.csv.gz', delimiter=None)  # separated by spaces
  y = _gzip_csv('diabetes_target.csv.gz', delimiter=None)[:, 0]
  x = (x - x.mean(axis=0)) / x.std(axis=0) / np.sqrt(x.shape[0])
  return x, y
