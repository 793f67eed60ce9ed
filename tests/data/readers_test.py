"""Tests of linear_jax.readers: the parsers return plain arrays and refuse bad bytes by file name."""

import warnings

import numpy as np
import pytest

from linear_jax.data import readers


def test_read_csv_matches_numpy_loadtxt(tmp_path):
  rng = np.random.default_rng(0)
  table = np.column_stack([rng.normal(size=(6, 3)), rng.integers(0, 3, 6), rng.uniform(0.5, 2.0, 6)])
  path = tmp_path / 'a.csv'
  np.savetxt(path, table, delimiter=';', header='f0;f1;f2;label;weight', comments='')
  x, y, w, names = readers.read_csv(str(path), target_column='label', weight_column='weight')
  expected = np.loadtxt(path, delimiter=';', skiprows=1)
  np.testing.assert_array_equal(x, expected[:, :3])
  np.testing.assert_array_equal(y, expected[:, 3])
  np.testing.assert_array_equal(w, expected[:, 4])
  assert names == ('f0', 'f1', 'f2')  # x's columns, the target's and the weights' left out


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


# -- csv files as spreadsheets and data frames write them --------------------------------------------


def _table(n=6, seed=0):
  rng = np.random.default_rng(seed)
  return np.round(rng.normal(size=(n, 2)), 3), rng.integers(0, 3, n)


def test_a_row_index_written_by_pandas_or_r_is_not_a_feature_and_is_said_once(tmp_path):
  x, y = _table()
  lines = {  # pandas' to_csv() (index, shuffled), R's write.csv (quoted, 1..N), pandas read back and written
    'pandas': [',a,b,label']
    + [f'{i},{a},{b},{c}' for i, (a, b), c in zip([3, 0, 5, 1, 4, 2], x, y, strict=True)],
    'r': ['"","a","b","label"']
    + [f'"{i + 1}",{a},{b},{c}' for i, ((a, b), c) in enumerate(zip(x, y, strict=True))],
    'unnamed': ['Unnamed: 0,a,b,label']
    + [f'{i},{a},{b},{c}' for i, ((a, b), c) in enumerate(zip(x, y, strict=True))],
  }
  for name, text in lines.items():
    path = tmp_path / f'{name}.csv'
    path.write_text('\n'.join(text) + '\n')
    with pytest.warns(readers.ReadNotice, match=r'the first column .* a row index .* not used as a feature'):
      got_x, got_y, _, _ = readers.read_csv(str(path))
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
  # A first column with a name of its own, or in a file without a header, is a feature like any other.
  for text in (['t,a,b,label'] + lines['unnamed'][1:], lines['unnamed'][1:]):
    path = tmp_path / 'kept.csv'
    path.write_text('\n'.join(text) + '\n')
    with warnings.catch_warnings():
      warnings.simplefilter('error')
      assert readers.read_csv(str(path))[0].shape == (6, 3)


def test_decimal_commas_are_read_with_a_notice_or_refused_never_misread(tmp_path):
  x, y = _table()
  path = tmp_path / 'eu.csv'
  rows = [f'{a};{b};{c}'.replace('.', ',') for (a, b), c in zip(x, y, strict=True)]
  path.write_text('\n'.join(['a;b;label', *rows]) + '\n')
  with pytest.warns(readers.ReadNotice, match=r"decimal commas \(line 2, column 1: '.*'\)"):
    got_x, got_y, _, _ = readers.read_csv(str(path), target_column='label')
  np.testing.assert_array_equal(got_x, x)
  np.testing.assert_array_equal(got_y, y)
  path.write_text('a;b;label\n1,5;2.5;0\n')
  with pytest.raises(
    ValueError, match=r"both with decimal commas \(line 2, column 1: '1,5'\) and with points"
  ):
    readers.read_csv(str(path))
  path.write_text('a,b,label\n"1,5",2,0\n')  # a decimal comma or a thousands separator: nothing says which
  with pytest.raises(ValueError, match=r"line 2, column 1: '1,5' has a comma inside a number"):
    readers.read_csv(str(path))


def test_a_label_in_the_first_column_points_to_target_column(tmp_path):
  path = tmp_path / 'first.csv'
  path.write_text('kind,a,b\nsetosa,1.0,2.5\nvirginica,2.0,0.5\n')
  with pytest.raises(
    ValueError,
    match=r"'setosa' is not a number; column 1 \('kind'\) holds text .* --target_column=kind",
  ):
    readers.read_csv(str(path))
  assert list(readers.read_csv(str(path), target_column='kind')[1]) == ['setosa', 'virginica']
  path.write_text('class_0,1.0,2.5\nclass_1,2.0,0.5\n')
  with pytest.raises(ValueError, match=r'column 1 holds text in every row, .* --target_column=0 '):
    readers.read_csv(str(path))
  path.write_text('label,px0,px1\n3,0,255\n7,12,0\n')  # integer pixels would pass for labels
  with pytest.raises(ValueError, match=r"first column is named 'label', .* give --target_column=label"):
    readers.read_csv(str(path))
  assert list(readers.read_csv(str(path), target_column='label')[1]) == [3, 7]


def test_a_header_name_of_several_columns_is_refused_naming_them(tmp_path):
  path = tmp_path / 'twice.csv'
  path.write_text('a,b,a\n1,2,cat\n3,4,dog\n')
  with pytest.raises(ValueError, match=r"twice.csv: 'a' names 2 columns \(columns 1, 3\); give the target"):
    readers.read_csv(str(path), target_column='a')


def test_a_file_read_at_another_delimiter_than_its_own_says_so(tmp_path):
  # A tab file read with --delimiter=, was one column a line, and the error said the file had no
  # column named 'species' and no header.
  path = tmp_path / 'iris.tsv'
  path.write_text('a\tb\tspecies\n1.0\t2.0\tsetosa\n3.0\t4.0\tvirginica\n')
  with pytest.raises(ValueError, match=r"iris\.tsv: every line is one field when split at ','"):
    readers.read_csv(str(path), target_column='species', delimiter=',')
  x, y, _, names = readers.read_csv(str(path), target_column='species')  # detected: tab
  assert x.shape == (2, 2) and list(y) == ['setosa', 'virginica'] and names == ('a', 'b')


def test_a_cell_is_named_at_its_line_in_the_file_blank_lines_counted(tmp_path):
  # Blank lines were dropped before the lines were numbered: 'x' on line 4 was said to be on line 3, and a
  # 'nan' was named later, 0-based, as example 2, feature 1.
  path = tmp_path / 'b.csv'
  path.write_text('a,b,y\n1,2,3\n\n4,x,6\n7,8,9\n')
  with pytest.raises(ValueError, match=r"b.csv: line 4, column 2: 'x' is not a number"):
    readers.read_csv(str(path))
  path.write_text('a,b,y\n1,2,3\n\n\n4,5,6\n7,nan,9\n')
  with pytest.raises(ValueError, match=r"b.csv: line 6, column 2: 'nan' is not a finite number"):
    readers.read_csv(str(path))
  path.write_text('1,2,3\n\n4,5\n')
  with pytest.raises(ValueError, match=r'b.csv: line 3 has 2 fields, expected 3'):
    readers.read_csv(str(path))


def test_a_delimiter_ending_every_line_is_no_column(tmp_path):
  # A spreadsheet's trailing comma: the empty last column was taken for the target ("every label is ''").
  path = tmp_path / 't.csv'
  path.write_text('a,b,y,\n1,2,3,\n4,5,6,\n7,8,10,\n')
  with pytest.warns(readers.ReadNotice, match='every line ends with its delimiter; the empty column'):
    x, y, w, names = readers.read_csv(str(path))
  np.testing.assert_array_equal(x, [[1, 2], [4, 5], [7, 8]])
  np.testing.assert_array_equal(y, [3, 6, 10])
  assert names == ('a', 'b') and w is None
  with pytest.warns(readers.ReadNotice):  # counted from the end as the file is written, the empty column too
    x, y, _, _ = readers.read_csv(str(path), target_column=-2)
  np.testing.assert_array_equal(y, [3, 6, 10])
  path.write_text('a,b,y,c\n1,2,3,\n4,5,6,7\n')  # a last column empty on one line only is a missing cell
  with pytest.raises(ValueError, match='line 2'):
    readers.read_csv(str(path))
