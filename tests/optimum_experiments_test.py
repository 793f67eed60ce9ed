"""End-to-end runs of convergence, L-BFGS, f − f*, refit, paths and the optimizer comparison."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


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


def test_lbfgs_with_reference_and_refit(tmp_path):
  out = _run(
    'experiments.train', '--optimizer=lbfgs', '--reference', '--refit', '--tol=1e-5', f'--workdir={tmp_path}'
  )
  assert out.returncode == 0, out.stderr
  assert 'stopped: converged' in out.stdout.splitlines()[-1]
  summary = json.loads((tmp_path / 'summary.json').read_text())
  s = summary['solver']
  assert s['converged'] and s['grad_norm'] <= 1e-5 and s['fevals'] >= s['iterations'] > 3
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
  assert 'stopped: max epochs' in out.stdout


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
    '--regs=1e-4,1e-3,1e-2,1e-1', f'--workdir={tmp_path}',
  )  # fmt: skip
  assert out.returncode == 0, out.stderr
  result = json.loads((tmp_path / 'path.json').read_text())
  accs = [m['val_accuracy'] for m in result['models']]
  assert result['best']['val_accuracy'] == max(accs) and all(m['converged'] for m in result['models'])
  norms = [m['weight_norm'] for m in result['models']]
  assert norms == sorted(norms, reverse=True)
  _png(tmp_path / 'path.png')


def test_optimizers_compares_against_f_star(tmp_path):
  out = _run('experiments.optimizers', '--epochs=12', f'--workdir={tmp_path}')
  assert out.returncode == 0, out.stderr
  result = json.loads((tmp_path / 'optimizers.json').read_text())
  assert {r['optimizer'] for r in result['rows']} >= {'sgd', 'adam', 'sgd cosine', 'full batch', 'lbfgs'}
  assert all(r['best_gap'] >= -1e-9 for r in result['rows'])  # nothing goes below f*
  lbfgs = next(r for r in result['rows'] if r['optimizer'] == 'lbfgs')
  assert lbfgs['final_gap'] < min(r['final_gap'] for r in result['rows'] if r['optimizer'] != 'lbfgs')
  _png(tmp_path / 'optimizers.png')
