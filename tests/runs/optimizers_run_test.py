"""optimizers_run: the comparison as one call, its claims against hand-made curves, its table."""

import json

import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.optim import config as config_lib
from linear_jax.runs import optimizers_run


def _curve(gaps, seconds_per_epoch=1.0):
  gaps = np.asarray(gaps, float)
  epochs = np.arange(1, len(gaps) + 1, dtype=float)
  return epochs, seconds_per_epoch * epochs, gaps, 'max_epochs'


DIVERGED = (np.array([]), np.array([]), np.array([]), 'diverged: loss is nan')


def test_runs_name_every_contender_with_its_rate_and_batch():
  r = optimizers_run.runs(10, 0.3, 32, 0.5)
  assert list(r) == [
    'sgd',
    'momentum',
    'nesterov',
    'adam',
    'sgd step',
    'sgd exponential',
    'sgd inverse_time',
    'sgd cosine',
    'full batch',
    'lbfgs',
  ]
  assert r['momentum']['learning_rate'] == pytest.approx(0.03) and r['adam']['learning_rate'] == 0.01
  assert r['sgd cosine']['decay_epochs'] == 2.0 and r['sgd step']['schedule'] == 'step'
  assert r['full batch'] == {'batch_size': 0, 'optimizer': 'sgd', 'learning_rate': 0.5}
  assert all(v['batch_size'] == 32 for k, v in r.items() if k != 'full batch')


def test_claims_measure_the_floor_the_best_decay_and_the_full_batch_on_known_curves():
  budget = 8  # the floor is the median of the last max(2, 8 // 4) = 2 gaps of constant-rate sgd
  results = {
    'sgd': _curve([5, 4, 3, 2, 1, 0.5, 0.3, 0.5], seconds_per_epoch=0.5),
    'sgd step': _curve([5, 4, 3, 2, 1, 0.5, 0.3, 0.2]),
    'sgd cosine': _curve([5, 4, 3, 2, 1, 0.5, 0.3, 0.1]),
    'sgd exponential': DIVERGED,  # left out of the decaying schedules
    'full batch': _curve([9, 8, 7, 6, 5, 4, 3, 2], seconds_per_epoch=0.25),
  }
  c = optimizers_run.claims(results, budget)
  assert c['constant_lr_noise_floor'] == pytest.approx(0.4)
  assert c['decaying_final'] == {'sgd step': 0.2, 'sgd cosine': 0.1}
  assert c['best_decaying'] == 'sgd cosine' and c['decaying_goes_below_the_floor'] is True
  assert c['gap_after_budget'] == {'mini-batch sgd': 0.5, 'full batch': 2.0}
  assert c['mini_batch_better_per_epoch'] is True
  # full batch's final gap 2 is first reached by sgd after 4 epochs (0.5 s each) and by itself after 8.
  assert c['seconds_to_full_batch_final_gap'] == {'mini-batch sgd': 2.0, 'full batch': 2.0}
  assert c['seconds_per_epoch'] == {'mini-batch sgd': 0.5, 'full batch': 0.25}

  results['full batch'] = DIVERGED
  c = optimizers_run.claims(results, budget)
  assert c['gap_after_budget'] is None and 'mini_batch_better_per_epoch' not in c
  assert optimizers_run.claims_text({'claims': c}).splitlines() == [
    'constant-lr sgd noise floor 0.4; best decaying (sgd cosine) ends at 0.1; below the floor: True',
    'full batch diverged (lower --full_batch_lr): no per-epoch comparison with it',
  ]


def test_a_batch_that_covers_every_row_is_noted_beside_the_mini_batch_claim():
  # With --batch_size at or above the training rows (or 0), "mini-batch sgd" took full-batch steps and
  # its claim against full batch compared two learning rates, without a word.
  assert optimizers_run.batch_note(64, 65) == {}
  for batch, n in ((64, 64), (64, 30), (0, 500)):
    note = optimizers_run.batch_note(batch, n)['note']
    assert note.startswith(f'--batch_size={batch} covers all {n} training rows') and f'below {n}' in note
  results = {'sgd': _curve([3, 2, 1]), 'sgd step': _curve([3, 2, 0.5]), 'full batch': _curve([3, 2.5, 2])}
  c = {**optimizers_run.claims(results, 3), **optimizers_run.batch_note(64, 30)}
  last = optimizers_run.claims_text({'claims': c}).splitlines()[-1]
  assert last == f'note: {c["note"]}'


def test_claims_of_a_diverged_sgd_say_so_by_name():
  # At --learning_rate=1000 every sgd run diverged, and the claims failed with `min() arg is an empty
  # sequence` after a NumPy warning.
  decay = {'sgd step': _curve([5, 4, 3]), 'full batch': _curve([9, 8, 7])}
  with pytest.raises(ValueError, match=r'^constant-rate sgd diverged, .*: lower --learning_rate\.$'):
    optimizers_run.claims({'sgd': DIVERGED, **decay}, 3)
  only_constant = {'sgd': _curve([5, 4, 3]), 'sgd step': DIVERGED, 'full batch': _curve([9, 8, 7])}
  with pytest.raises(ValueError, match='every decaying schedule of sgd diverged'):
    optimizers_run.claims(only_constant, 3)


def test_a_contender_whose_loss_rises_tenfold_has_diverged_and_no_claim_is_measured_on_it(tmp_path):
  # On diabetes sgd at 0.3 rose to f − f* = 1.15e4, under the library's limit (10⁴ times the start), and
  # the claims were printed and saved from it.
  dataset = data.prepare(data.load('diabetes'), 'diabetes', seed=0, dtype=np.float64)
  config = config_lib.TrainConfig(loss='l2', dtype='float64', epochs=3, seed=0)
  with pytest.raises(ValueError, match=r'^constant-rate sgd diverged'):
    optimizers_run.compare(config, dataset, str(tmp_path), learning_rate=0.3)
  assert not (tmp_path / 'optimizers.json').exists()


def test_table_writes_a_dash_for_a_diverged_contender():
  rows = [
    {'optimizer': 'sgd', 'learning_rate': 0.3, 'final_gap': 1.5e-3, 'best_gap': 1e-3, 'epochs': 12.0,
     'seconds': 0.0214, 'stop': 'max_epochs'},
    {'optimizer': 'lbfgs', 'learning_rate': None, 'final_gap': None, 'best_gap': None, 'epochs': None,
     'seconds': None, 'stop': 'diverged: nan'},
  ]  # fmt: skip
  lines = optimizers_run.table({'rows': rows}).splitlines()
  assert lines[2] == '| sgd | 0.3 | 0.0015 | 0.001 | 12 | 0.021 |'
  assert lines[3] == '| lbfgs | — | — | — | — | — |'


def test_compare_writes_its_json_and_picture_and_the_rows_agree_with_the_claims(tmp_path):
  dataset = data.prepare(data.blobs(300, 4, 3, seed=0), 'blobs', seed=0, dtype=np.float64)
  config = config_lib.TrainConfig(reg=1e-2, dtype='float64', epochs=6, seed=0)
  out = optimizers_run.compare(config, dataset, str(tmp_path), learning_rate=0.3, batch_size=32)
  assert json.loads((tmp_path / 'optimizers.json').read_text()) == out
  assert (tmp_path / 'optimizers.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert (out['dataset'], out['loss'], out['reg'], out['budget_epochs']) == ('blobs', 'softmax', 1e-2, 6)
  rows = {r['optimizer']: r for r in out['rows']}
  assert list(rows) == list(optimizers_run.runs(6, 0.3, 32, 0.5))
  for r in rows.values():
    assert r['best_gap'] >= -1e-9 and r['best_gap'] <= r['final_gap'] and r['epochs'] <= 6
  c = out['claims']
  decaying = {k: r['final_gap'] for k, r in rows.items() if k.startswith('sgd ')}
  assert c['decaying_final'] == decaying and c['best_decaying'] == min(decaying, key=decaying.get)
  assert c['decaying_goes_below_the_floor'] == (decaying[c['best_decaying']] < c['constant_lr_noise_floor'])
  assert c['gap_after_budget'] == {
    'mini-batch sgd': rows['sgd']['final_gap'],
    'full batch': rows['full batch']['final_gap'],
  }
  assert c['mini_batch_better_per_epoch'] == (rows['sgd']['final_gap'] < rows['full batch']['final_gap'])
  table = optimizers_run.table(out).splitlines()[2:]
  assert [line.split(' | ')[0].removeprefix('| ') for line in table] == list(rows)
  for line, r in zip(table, rows.values(), strict=True):
    assert line.split(' | ')[2] == format(r['final_gap'], '.3g')


def test_passes_count_each_lbfgs_evaluation_and_stop_at_the_budget():
  """One pass per epoch, one per L-BFGS evaluation of f and ∇f; L-BFGS's curve is cut at the budget the
  other contenders get (the report's optimum section let it run 66 passes against their 60)."""
  from linear_jax.optim import results  # pylint: disable=import-outside-toplevel

  history = [{'train_loss': f, 'fevals': e} for f, e in ((3.0, 2), (2.0, 30), (1.5, 60), (1.0, 66))]
  lbfgs = results.FitResult(
    params=None, best_params=None, history=history, best_epoch=4, solver={'seconds': 6.6, 'fevals': 66}
  )
  epochs, seconds, f = optimizers_run.passes(lbfgs, 60)
  np.testing.assert_array_equal(epochs, [2, 30, 60])
  np.testing.assert_allclose(seconds, [0.2, 3.0, 6.0])
  np.testing.assert_array_equal(f, [3.0, 2.0, 1.5])
  sgd = results.FitResult(
    params=None, best_params=None, history=[{'train_loss': 2.0, 'seconds': 0.5}] * 3, best_epoch=3
  )
  epochs, seconds, f = optimizers_run.passes(sgd, 60)
  np.testing.assert_array_equal(epochs, [1, 2, 3])
  np.testing.assert_allclose(seconds, [0.5, 1.0, 1.5])


def test_a_non_smooth_objective_is_refused_with_advice_this_command_can_follow(tmp_path):
  # The solver's advice was to compare without f* (train: drop --reference), which optimizers cannot do.
  dataset = data.prepare(data.blobs(60, 2, 3, seed=0), 'blobs', seed=0)
  for kwargs, match in (
    ({'loss': 'svm'}, r'--loss=svm is not differentiable at its kinks\. Use a smooth loss \(.*softmax\)\.$'),
    ({'penalty': 'l1', 'reg': 1e-2}, r'--penalty=l1 is not differentiable at W = 0\. Use --penalty=l2, or'),
  ):
    with pytest.raises(ValueError, match=r'^optimizers measures every contender by f − f\*.*' + match):
      optimizers_run.compare(config_lib.TrainConfig(epochs=2, **kwargs), dataset, str(tmp_path))
