"""search_run: the printed table of a comparison."""

from linear_jax.runs import search_run


def test_table_writes_a_dash_where_there_is_no_validation_split():
  # `search --val_fraction=0` ran every method, wrote search.json, then failed formatting `None` in the
  # table: a TypeError traceback after all the work.
  row = {'problem': 'digits', 'best_train_loss': 0.25, 'evaluations': 100, 'seconds': 1.5}
  rows = [{**row, 'method': 'random search', 'val_metric': None}, {**row, 'method': 'gd', 'val_metric': 0.9}]
  lines = search_run.table(rows, 100).splitlines()
  header = lines[3]
  assert header.split() == ['problem', 'method', 'best', 'train', 'loss', 'val', 'metric', 'evals', 'seconds']
  assert lines[4].split() == ['digits', 'random', 'search', '0.2500', '—', '100', '1.50']
  assert lines[5].split() == ['digits', 'gd', '0.2500', '0.9000', '100', '1.50']
  assert len(lines[4]) == len(lines[5]) == len(header)  # the dash keeps the columns aligned
