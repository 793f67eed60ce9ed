"""The data-loading benchmark section runs and reports every figure it promises."""

from benchmarks import loading as bench_data


def test_quick_run_measures_both_formats_against_np_load():
  res = bench_data.run(quick=True, repeats=1)
  assert set(res['formats']) == {'npz', 'npy'}
  for row in res['formats'].values():
    assert row['np_load_seconds'] > 0 and row['prepare_seconds'] > 0
    assert row['prepare_peak'] > 0 and row['time_ratio'] > 0
  table = bench_data.markdown(res)
  assert '| npz |' in table and '| npy |' in table and '20,000 x 256 float32' in table
