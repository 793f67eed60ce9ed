"""End-to-end runs of convergence, L-BFGS, f − f*, refit, paths and the optimizer comparison."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(module, *args, timeout=300):
  return subprocess.run(
    [sys.executable, '-m', module, *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


def _png(path):
  assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', path


def test_default_run_converges_and_says_so(tmp_path):
  out = _run('experiments.train', '--dataset=binary2d', f'--workdir={tmp_path}', '--quiet', '--plots=false')
  assert out.returncode == 0, out.stderr
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['stop_reason'] == 'converged' and summary['epochs_run'] < 1000
  assert out.stdout.strip().splitlines()[-1].count('stopped: converged') == 1


@pytest.mark.parametrize('name', ['digits', 'breast_cancer'])
def test_default_run_on_a_held_out_file_is_within_half_a_point_of_logistic_regression(tmp_path, name):
  # The experiment: a 70/30 split made outside the project, the 70% as the training file, the
  # 30% as the test file, every other flag at its default; params.npz scored here with NumPy.
  from sklearn import datasets
  from sklearn import linear_model
  from sklearn import model_selection
  from sklearn import pipeline
  from sklearn import preprocessing

  d = getattr(datasets, f'load_{name}')()
  xtr, xte, ytr, yte = model_selection.train_test_split(d.data, d.target, test_size=0.3, random_state=0)
  np.savez(tmp_path / 'train.npz', x=xtr, y=ytr)
  np.savez(tmp_path / 'test.npz', x=xte, y=yte)
  out = _run(
    'experiments.train',
    '--dataset=npz',
    f'--data_path={tmp_path / "train.npz"}',
    f'--test_path={tmp_path / "test.npz"}',
    f'--workdir={tmp_path / "run"}',
    '--quiet',
    '--plots=false',
  )
  assert out.returncode == 0, out.stderr
  params = np.load(tmp_path / 'run' / 'params.npz')
  ours = np.mean(np.argmax(xte @ params['W'].T + params['b'], axis=1) == yte)
  ref = pipeline.make_pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=1000))
  theirs = ref.fit(xtr, ytr).score(xte, yte)
  assert ours >= theirs - 0.005, (ours, theirs)
  assert json.loads((tmp_path / 'run' / 'summary.json').read_text())['stop_reason'] == 'converged'


def test_lbfgs_with_reference_and_refit(tmp_path):
  out = _run(
    'experiments.train', '--optimizer=lbfgs', '--reference', '--refit', '--tol=3e-5', f'--workdir={tmp_path}'
  )
  assert out.returncode == 0, out.stderr
  assert 'stopped: converged' in out.stdout.splitlines()[-1]
  summary = json.loads((tmp_path / 'summary.json').read_text())
  s = summary['solver']
  assert s['converged'] and s['grad_norm'] <= 3e-5 and s['fevals'] >= s['iterations'] > 3
  assert summary['saved_params'] == 'refit' and summary['refit']['train_examples'] > 0
  gaps = [json.loads(x)['f_minus_f_star'] for x in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert (
    len(gaps) == s['iterations'] and gaps[0] > 1e-3 and abs(gaps[-1]) < 1e-5
  )  # float32 training, f* float64


def test_sgd_reference_records_the_gap_every_epoch(tmp_path):
  out = _run(
    'experiments.train', '--reference', '--tol_on=none', '--epochs=5', f'--workdir={tmp_path}', '--quiet'
  )
  assert out.returncode == 0, out.stderr
  rows = [json.loads(x) for x in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert len(rows) == 5 and all(r['f_minus_f_star'] > 0 for r in rows)
  assert 'stopped: not converged: the most epochs (5) ran out' in out.stdout
  # Resumed without --reference, then with it: every epoch is recorded alike (a resume mixed epochs with
  # f − f* and epochs without, beside a summary whose f* said the other).
  for reference, has_gap in (('--noreference', False), ('--reference', True)):
    out = _run(
      'experiments.train', reference, '--tol_on=none', '--epochs=5', f'--workdir={tmp_path}', '--resume'
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
    assert len(rows) == 5 and all(('f_minus_f_star' in r) == has_gap for r in rows)
    assert (json.loads((tmp_path / 'summary.json').read_text())['f_star'] is not None) == has_gap


def test_refit_without_validation_and_divergence_are_reported(tmp_path):
  out = _run('experiments.train', '--refit', '--val_fraction=0', f'--workdir={tmp_path}/a')
  assert out.returncode == 1 and '--refit needs a validation split' in out.stderr
  out = _run(
    'experiments.train', '--dataset=diabetes', '--loss=l2', '--learning_rate=100', f'--workdir={tmp_path}/b'
  )
  assert out.returncode == 1 and 'stopped: diverged' in out.stderr
  assert json.loads((tmp_path / 'b' / 'summary.json').read_text())['stop_reason'] == 'diverged'


def test_lr_sweep_lbfgs_fits_a_path_and_chooses_on_validation(tmp_path):
  out = _run(
    'experiments.lr_sweep', '--optimizer=lbfgs', '--dataset=breast_cancer', '--loss=logistic',
    '--regs=1e-4,1e-3,1e-2,1e-1', '--refit', f'--workdir={tmp_path}',
  )  # fmt: skip
  assert out.returncode == 0, out.stderr
  result = json.loads((tmp_path / 'path.json').read_text())
  assert result['refit']['reg'] == result['best']['reg'] and result['refit']['stop_reason'] == 'converged'
  assert result['refit']['train_examples'] > 0
  refit = result['refit']  # said, as --retrain_best's result is (it was in path.json alone)
  assert out.stdout.strip().splitlines()[-1] == (
    f'refit on train + validation ({refit["train_examples"]} rows) at reg={refit["reg"]:g}: '
    f'test_accuracy={refit["final"]["test_accuracy"]:.4f}, test_loss={refit["final"]["test_loss"]:.4f}'
  )
  accs = [m['val_accuracy'] for m in result['models']]
  assert result['best']['val_accuracy'] == max(accs) and all(m['converged'] for m in result['models'])
  norms = [m['weight_norm'] for m in result['models']]
  assert norms == sorted(norms, reverse=True)
  _png(tmp_path / 'path.png')
  out = _run('experiments.lr_sweep', '--refit', '--lrs=0.1', f'--workdir={tmp_path}/sgd')
  assert out.returncode == 1 and '--refit refits the L-BFGS path' in out.stderr


def test_optimizers_compares_against_f_star(tmp_path):
  out = _run('experiments.optimizers', '--epochs=12', f'--workdir={tmp_path}')
  assert out.returncode == 0, out.stderr
  result = json.loads((tmp_path / 'optimizers.json').read_text())
  assert {r['optimizer'] for r in result['rows']} >= {'sgd', 'adam', 'sgd cosine', 'full batch', 'lbfgs'}
  assert all(r['best_gap'] >= -1e-9 for r in result['rows'])  # nothing goes below f*
  lbfgs = next(r for r in result['rows'] if r['optimizer'] == 'lbfgs')
  assert lbfgs['final_gap'] < min(r['final_gap'] for r in result['rows'] if r['optimizer'] != 'lbfgs')
  _png(tmp_path / 'optimizers.png')
