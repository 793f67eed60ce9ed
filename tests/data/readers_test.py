"""Tests of linear_jax.readers: the parsers return plain arrays and refuse bad bytes by file name."""

import numpy as np
import pytest

from linear_jax.data import readers


def test_read_csv_matches_numpy_loadtxt(tmp_path):
  rng = np.random.default_rng(0)
  table = np.column_stack([rng.normal(size=(6, 3)), rng.integers(0, 3, 6), rng.uniform(0.5, 2.0, 6)])
  path = tmp_path / 'a.csv'
  np.savetxt(path, table, delimiter=';', header='f0;f1;f2;label;weight', comments='')
  x, y, w = readers.read_csv(str(path), target_column='label', weight_column='weight')
  expected = np.loadtxt(path, delimiter=';', skiprows=1)
  np.testing.assert_array_equal(x, expected[:, :3])
  np.testing.assert_array_equal(y, expected[:, 3])
  np.testing.assert_array_equal(w, expected[:, 4])


def test_npz_arrays_asks_before_decompressing_and_maps_stored_arrays(tmp_path):
  x = np.arange(40, dtype=np.float32).reshape(10, 4)
  np.savez_compressed(tmp_path / 'c.npz', x=x, y=np.zeros(10))
  asked = []

  def refuse(num_bytes):
    asked.append(num_bytes)
    raise ValueError(f'{tmp_path / "c.npz"}: too big')

  with pytest.raises(ValueError, match='c.npz: too big'):
    readers.npz_arrays(str(tmp_path / 'c.npz'), ('x', 'y'), refuse)
  assert asked == [x.nbytes + 128]  # the .npy member: a 128-byte header, then the data
  np.savez(tmp_path / 's.npz', x=x, y=np.zeros(10))
  got = readers.npz_arrays(str(tmp_path / 's.npz'), ('x', 'y', 'w'), refuse)
  np.testing.assert_array_equal(got['x'], x)
  assert isinstance(got['x'], np.memmap) and got['w'] is None and asked == [x.nbytes + 128]


def test_read_npy_labels_refuses_pickled_objects_naming_the_file(tmp_path):
  np.save(tmp_path / 'y.npy', np.array([{'a': 1}, None], dtype=object), allow_pickle=True)
  with pytest.raises(ValueError, match=r'y\.npy: cannot read as \.npy without pickle'):
    readers.read_npy_labels(str(tmp_path / 'y.npy'))
  np.save(tmp_path / 'z.npy', np.array(3))
  with pytest.raises(ValueError, match=r'z\.npy: not an array of labels'):
    readers.read_npy_labels(str(tmp_path / 'z.npy'))
