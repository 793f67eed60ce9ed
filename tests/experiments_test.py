"""End-to-end smoke tests of the experiments, each run as a user would run it."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from linear_jax.optim import config
from linear_jax.runs import experiment
from linear_jax.training import workdir as workdir_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(module, *args, timeout=240, env=None):
  return subprocess.run(
    [sys.executable, '-m', module, *args],
    cwd=ROOT,
    env=None if env is None else {**os.environ, **env},
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


def _assert_png(path):
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n', path


def test_train_writes_every_output(tmp_path):
  out = _run('experiments.train', f'--workdir={tmp_path}', '--epochs=4', '--quiet')
  assert out.returncode == 0, out.stderr
  assert 'test_accuracy' in out.stdout
  lines = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [m['epoch'] for m in lines] == [1, 2, 3, 4]
  assert {'train_loss', 'val_accuracy', 'learning_rate', 'examples_per_s'} <= set(lines[0])
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['final']['test_accuracy'] > 0.85 and summary['flags']['loss'] == 'softmax'
  assert 'jax' in summary['versions']
  for png in ('curves.png', 'templates.png'):
    _assert_png(tmp_path / png)
  # NumPy alone scores raw data with the saved W [C, D] and b [C].
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

  d = load_digits()
  p = np.load(tmp_path / 'params.npz')
  assert p['W'].shape == (10, 64) and p['b'].shape == (10,)
  acc = np.mean(np.argmax(d.data @ p['W'].T + p['b'], 1) == d.target)
  assert acc > 0.85


def _train_in_process(workdir, cfg, data_cfg):
  """The run `experiments.train` makes of these settings, and the last line it prints."""
  workdir.mkdir(parents=True, exist_ok=True)
  summary = experiment.train_and_evaluate(cfg, data_cfg, str(workdir))
  return summary, experiment.last_line(summary, str(workdir))


def test_train_without_test_or_validation_split_reports_what_it_has(tmp_path):
  # The command prints `last_line` (test_train_writes_every_output runs it); the splits are the point.
  _, line = _train_in_process(
    tmp_path / 'a', config.TrainConfig(epochs=1), experiment.DataConfig(test_fraction=0)
  )
  assert line.startswith('val_accuracy: ')
  summary, line = _train_in_process(
    tmp_path / 'b', config.TrainConfig(epochs=1), experiment.DataConfig(test_fraction=0, val_fraction=0)
  )
  assert line.startswith('train_accuracy: ')
  assert 'test_accuracy' not in json.loads((tmp_path / 'b' / 'summary.json').read_text())['final']


def test_the_last_line_shows_an_error_in_small_units_and_the_tolerance_it_stopped_at(tmp_path):
  """Targets in millionths, left in their units: the test MSE is about 1e-14, which four decimals
  printed as 0.0000; the gradient test's tolerance is in the targets' units, and the line says so."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 3))
  np.save(tmp_path / 'x.npy', x)
  np.save(tmp_path / 'y.npy', (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=400)) * 1e-6)
  files = experiment.DataConfig(
    dataset='npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'), preprocess='none'
  )
  summary, line = _train_in_process(tmp_path / 'run', config.TrainConfig(loss='l2', optimizer='lbfgs'), files)
  mse = summary['final']['test_mse']
  assert 1e-16 < mse < 1e-12 and line.startswith(f'test_mse: {mse:.4g}  (')
  assert '0.0001 in standardized units, times' in line and summary['solver']['iterations'] > 1


def test_the_last_line_scores_the_model_params_npz_holds(tmp_path):
  """With patience the best epoch's model is saved, with --refit the refit's: the line scores that one
  and names it, not the last epoch of the first run."""
  diabetes = experiment.DataConfig(dataset='diabetes')
  patient = config.TrainConfig(loss='l2', eval_every=7, epochs=20, tol_on='none', patience=1)
  summary, line = _train_in_process(tmp_path / 'best', patient, diabetes)
  assert summary['saved_params'] == 'best' and summary['best_epoch'] < summary['epochs_run']
  best, last = summary['best']['test_mse'], summary['final']['test_mse']
  assert f'{best:.4f}' != f'{last:.4f}'  # otherwise this run could not tell them apart
  assert line.startswith(f'test_mse: {best:.4f}  (epoch {summary["best_epoch"]}, the best on validation')
  summary = experiment.train_and_evaluate(
    config.TrainConfig(loss='l2', epochs=30), diabetes, str(tmp_path), experiment.RunOptions(refit=True)
  )
  line = experiment.last_line(summary, str(tmp_path))
  refitted, first = summary['refit']['final']['test_mse'], summary['final']['test_mse']
  assert summary['saved_params'] == 'refit' and f'{refitted:.4f}' != f'{first:.4f}'
  assert line.startswith(f'test_mse: {refitted:.4f}  (the refit on train + validation, saved; ')


def test_train_on_2d_data_draws_regions(tmp_path):
  cfg = config.TrainConfig(loss='logistic', bias_trick=True, epochs=3)
  _train_in_process(tmp_path, cfg, experiment.DataConfig(dataset='binary2d'))
  _assert_png(tmp_path / 'regions.png')


BAD_FLAGS = [
  (['--learning_rate=0'], '--learning_rate must be > 0'),
  (['--batch_size=0'], '--batch_size must be > 0'),
  (['--epochs=-1'], '--max_epochs (--epochs) must be > 0'),  # named only the flag not typed
  # A number's flag is checked in the run's dtype: float64 holds what float32 rounds away.
  (['--optimizer=momentum', '--momentum=0.999999999'], '--momentum=0.999999999 rounds to 1 in float32'),
  (['--optimizer=momentum', '--momentum=0.999999999', '--dtype=float64'], 'accepted'),
  (['--learning_rate=1e-50', '--dtype=float64'], 'accepted'),
  (['--optimizer=adam', '--momentum=0.999999999'], '--optimizer=adam reads no --momentum'),
  (['--tol=0'], '--tol must be > 0'),
  (['--optimizer=lbfgs', '--loss=svm'], 'not differentiable at its kinks'),
  (['--optimizer=lbfgs', '--batch_size=32'], 'drop --batch_size'),
  # What L-BFGS does not read was ignored without a word (summary.json said learning_rate null).
  (['--optimizer=lbfgs', '--learning_rate=0.1'], 'line search and reads no --learning_rate; drop it'),
  (['--epochs=3', '--max_epochs=5'], '--epochs is another name for --max_epochs: give one of them'),
  (['--epochs=3'], 'accepted'),
  (
    ['--optimizer=lbfgs', '--schedule=cosine', '--momentum=0.5'],
    'reads no --momentum, --schedule; drop them',
  ),
  (['--reg=-0.5'], 'reg'),
  (['--loss=hinge2'], 'loss'),
  (['--optimizer=newton'], 'optimizer'),
  (['--loss=hinge'], '--loss=hinge does not fit --dataset=digits: it has 10 classes'),
  (['--dataset=diabetes', '--loss=softmax'], '--loss=softmax does not fit --dataset=diabetes'),
  (['--momentum=1.5'], '--momentum must be in [0, 1)'),
  # Flags the chosen optimizer, schedule or test never reads were ignored without a word.
  (['--momentum=0.5'], '--optimizer=sgd reads no --momentum (--optimizer=momentum and nesterov do); drop it'),
  (['--optimizer=adam', '--momentum=0.5'], '--optimizer=adam reads no --momentum'),
  (['--optimizer=nesterov', '--momentum=0.5'], 'accepted'),
  (['--decay_epochs=3'], '--schedule=adaptive reads no --decay_epochs'),
  (['--schedule=cosine', '--decay_rate=0.1', '--decay_epochs=3'], 'reads no --decay_rate, --decay_epochs'),
  (['--schedule=step', '--decay_epochs=3'], 'accepted'),
  (
    ['--tol_on=grad_norm', '--schedule=constant', '--n_iter_no_change=3'],
    '--tol_on=grad_norm with --schedule=constant counts no epochs without change',
  ),
  (['--tol_on=none', '--n_iter_no_change=3'], 'accepted'),  # the adaptive schedule counts them
  (['--optimizer=lbfgs', '--n_iter_no_change=3'], '--optimizer=lbfgs counts no epochs without change'),
  (['--n_iter_no_change=3'], 'accepted'),
  (['--tol_on=none', '--tol=0.5'], '--tol_on=none tests no tolerance'),
  (['--optimizer=lbfgs', '--tol=1e-6'], 'accepted'),  # L-BFGS always stops on --tol
  # L-BFGS stopped on its gradient under --tol_on=none, and --patience never fired (it evaluates once).
  (['--tol_on=none', '--optimizer=lbfgs'], '--optimizer=lbfgs stops when its largest gradient entry'),
  (['--optimizer=lbfgs', '--patience=2', '--eval_every=2'], 'reads no --patience, --eval_every; drop them'),
  (['--num_devices=5'], '--num_devices is the devices --parallel=shard_map or pmap splits'),
  (['--num_devices=5', '--parallel=shard_map'], 'accepted'),
  (['--verbose', '--quiet'], '--quiet shows no progress and --verbose every epoch: give one'),
  (['--loss=svm', '--loss_hparams=margin=1,margin=2'], "--loss_hparams gives 'margin' twice"),  # the last won
  (['--full_batch', '--batch_size=32'], '--full_batch takes every example in one step: drop --batch_size'),
  (['--eval_every=0'], 'eval_every'),
  (['--block_rows=-1'], 'block_rows'),
]


H_MESSAGE = '--h must be finite and in [1e-12, 0.1]'
BAD_FLAGS_OF = {  # each command's refused (or accepted) flags, with the message each must give
  'experiments.train': BAD_FLAGS,
  'experiments.lr_sweep': [
    # The L-BFGS path reads --regs alone: a sweep's other axes were dropped without a word.
    (['--optimizer=lbfgs', '--seeds=0,1', '--retrain_best'], 'reads no --seeds, --retrain_best; drop them'),
    (['--optimizer=lbfgs', '--lrs=0.1,1'], '--optimizer=lbfgs fits the regularization path over --regs'),
    (['--optimizer=lbfgs', '--regs=1e-3,1e-2'], 'accepted'),
    (['--lrs=0.1,-1'], '--lrs must hold only values > 0'),
    # Values the dtype cannot hold, by their flag and before the data loads (were refused after it, or
    # trained: a reg of 1e300 blamed the learning rates).
    (['--lrs=1e-50'], '--lrs: learning_rate=1e-50 rounds to 0 in float32'),
    (['--lrs=1e-50', '--dtype=float64'], 'accepted'),
    (['--regs=1e300'], '--regs: reg=1e+300 overflows float32'),
    (['--optimizer=momentum', '--momenta=0.5,0.999999999'], '--momenta: momentum=0.999999999 rounds to 1'),
    (['--loss=svm', '--margins=1e300'], '--margins: margin=1e+300 overflows float32'),
    (['--lrs='], '--lrs is empty'),
    (['--lr_min=1', '--lr_max=0.1'], '--lr_min must be < --lr_max'),
    (['--lr_max=inf'], '--lr_max must be a finite number > 0'),  # said '> 0' of an infinity
    (['--lr_min=0'], '--lr_min must be a finite number > 0'),
    (['--lr_min=20'], 'accepted'),  # the other end derived (was the literal default 10: refused)
    # --reg and --momentum beside --momenta were never trained and moved the range derived for the sweep.
    (['--reg=0.5'], 'lr_sweep trains every strength of --regs: give them there'),
    (['--optimizer=momentum', '--momenta=0.5,0.9', '--momentum=0.3'], '--momenta lists the momenta'),
    (['--optimizer=momentum', '--momentum=0.3'], 'accepted'),
    (['--verbose', '--quiet'], 'give one'),
    (['--regs=0,-1e-3'], '--regs must hold only values >= 0'),
    (['--regs=a,b'], "--regs: 'a,b' is not a comma-separated list"),
    (['--seeds=0,-1'], '--seeds must be comma-separated integers'),
    (['--seeds=a'], '--seeds must be comma-separated integers'),
    (['--seeds=1,1'], "--seeds repeats 1 in '1,1'"),
    # Every list is an axis of the grid: a repeat would break its pictures after the whole sweep.
    (['--regs=0,0'], "--regs repeats 0 in '0,0': each value is one point of the grid"),
    (['--lrs=0.1,0.1'], "--lrs repeats 0.1 in '0.1,0.1'"),
    (['--momenta=0.5,0.9,0.5'], '--momenta repeats 0.5'),
    (
      ['--dataset=diabetes', '--loss=huber', '--sweep_loss_hparam=delta=1,2,1'],
      "--sweep_loss_hparam=delta repeats 1 in '1,2,1'",
    ),
    (['--momenta=0,1'], '--momenta must hold only values in [0, 1)'),
    # A margin is held to its loss's bounds (Loss.bounds), the flag named.
    (
      ['--loss=svm', '--margins=0.5,-1'],
      "--margins: Loss 'svm': hyperparameter 'margin' must be finite and >= 0",
    ),
    (['--margins=1'], "--margins: Loss 'softmax' has no hyperparameters; got 'margin'"),
    (['--loss=svm', '--margins=0.5,2'], 'accepted'),
    (['--lrs=0.1', '--lr_min=0.01'], '--lrs lists the learning rates and --lr_min, --lr_max, --num_lrs'),
    (['--lrs=0.1', '--num_lrs=4'], 'make a range of them: give one'),
    (['--momenta=0.5,0.9'], '--momenta sweeps the momentum of --optimizer=momentum or nesterov'),
    (['--optimizer=adam', '--momenta=0.5'], 'the others have none'),
    (['--optimizer=nesterov', '--momenta=0.5,0.9'], 'accepted'),
    # Every setting trains --epochs: early stopping and a tolerance were accepted and never read.
    (['--patience=2', '--eval_every=4'], "apply to --retrain_best's run alone"),
    (['--patience=2', '--eval_every=4'], 'drop --patience, --eval_every.'),
    (['--tol=0.9'], '--tol to --optimizer=lbfgs (a regularization path) alone: drop --tol.'),
    (['--optimizer=lbfgs', '--tol=1e-6'], 'accepted'),
    (['--patience=0', '--eval_every=1'], 'accepted'),  # what the sweep does
    (['--retrain_best', '--patience=3'], 'accepted'),  # the retrained run stops early
  ],
  'experiments.search': [
    (['--budget=0'], '--budget must be >= 1'),
    (['--population=0'], '--population must be >= 2'),
    (['--mutation_scale=0'], '--mutation_scale must be > 0'),
    (['--mutation_scale=-1'], '--mutation_scale must be > 0'),
    # inf passed `> 0` and failed after the data had loaded, naming an inner `scale`; 1e300 is inf in float32.
    (['--step_size=inf'], '--step_size must be > 0 and finite in float32 (not rounded to 0 there), got inf'),
    (
      ['--init_scale=1e300'],
      '--init_scale must be > 0 and finite in float32 (not rounded to 0 there), got 1e+300',
    ),
    (
      ['--learning_rate=1e-50'],
      '--learning_rate must be > 0 and finite in float32 (not rounded to 0 there), got 1e-50',
    ),
  ],
  'experiments.optimizers': [
    # 1e-50 ran, learning nothing, in float32, where train refuses it; 1e300 left a row of dashes.
    (
      ['--learning_rate=1e-50', '--dtype=float32'],
      '--learning_rate must be > 0 and finite in float32 (not rounded to 0 there), got 1e-50',
    ),
    (['--learning_rate=1e-50'], 'accepted'),  # float64 holds it
    (['--full_batch_lr=1e300', '--dtype=float32'], '--full_batch_lr must be > 0 and finite in float32'),
    (
      ['--learning_rate=-1'],
      '--learning_rate must be > 0 and finite in float64 (not rounded to 0 there), got -1',
    ),
  ],
  'experiments.gradcheck': [
    (['--h=0'], H_MESSAGE),
    (['--h=1e300'], H_MESSAGE),
    (['--h=nan'], H_MESSAGE),
    (['--h=1e-13'], H_MESSAGE),
    # Each was accepted and did nothing: a forward check with no extrapolation, a count no method drew,
    # a penalty's bug that a check at reg 0 cannot see.
    (['--method=forward', '--richardson'], '--richardson extrapolates central differences'),
    (['--method=central', '--num_coords=5'], '--num_coords is read by --method=sparse alone'),
    (['--method=sparse', '--num_directions=3'], '--num_directions is read by --method=directional alone'),
    (['--num_coords=5'], 'accepted'),  # --method=all draws them
    (['--plant=missing_reg', '--reg=0'], "--plant=missing_reg leaves out the penalty's gradient"),
    # A binary loss has one output: the flag was accepted and the check ran on C = 1 all the same.
    (['--loss=hinge', '--num_classes=3'], '--num_classes is not read by --loss=hinge: a binary loss has one'),
    (['--loss=svm', '--num_classes=3'], 'accepted'),
    (['--num_classes=3'], 'accepted'),  # --loss=all checks multiclass losses too
    # The plant replaced the custom VJP unsaid; the float32 bound refused what a float64 check holds.
    (['--grad=custom_vjp', '--plant=sign_flip'], '--grad=custom_vjp would go unchecked: give one of the two'),
    (['--loss=svm', '--reg=1e39'], 'accepted'),
  ],
}


FLAG_ERRORS = (
  'import importlib, json, sys\n'
  'from absl import app, flags, logging\n'
  'absl_flags = set(flags.FLAGS)\n'
  'out = {}\n'
  'for module, cases in json.loads(sys.argv[1]).items():\n'
  "  # Each command as if it were the only one imported: the last one's flags and modules are gone.\n"
  '  for name in set(flags.FLAGS) - absl_flags:\n'
  '    delattr(flags.FLAGS, name)\n'
  "  for name in [m for m in sys.modules if m.split('.')[0] == 'experiments']:\n"
  '    del sys.modules[name]\n'
  '  importlib.import_module(module)\n'
  '  out[module] = []\n'
  '  for argv in cases:\n'
  '    try:\n'
  "      flags.FLAGS(['prog'] + argv)\n"
  "      out[module].append('accepted')\n"
  '    except flags.Error as e:\n'
  '      out[module].append(str(e))\n'
  '    flags.FLAGS.unparse_flags()\n'
  'print(json.dumps(out))\n'
)


@pytest.fixture(scope='module')
def flag_errors():
  """`{command: [message or 'accepted' for each argv of BAD_FLAGS_OF[command]]}`, parsed in one process."""
  argvs = {module: [argv for argv, _ in cases] for module, cases in BAD_FLAGS_OF.items()}
  res = subprocess.run(
    [sys.executable, '-c', FLAG_ERRORS, json.dumps(argvs)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
    timeout=120,
  )
  return json.loads(res.stdout.strip().splitlines()[-1])


def _assert_flag_errors(flag_errors, module):
  """Each `(argv, expected message)` of BAD_FLAGS_OF[module] got its message."""
  for (argv, expected), message in zip(BAD_FLAGS_OF[module], flag_errors[module], strict=True):
    assert expected in message, (module, argv, message)


def test_bad_flags_are_refused_naming_the_flag(flag_errors):
  _assert_flag_errors(flag_errors, 'experiments.train')


def test_optimizers_refuses_a_step_its_dtype_cannot_take(flag_errors):
  _assert_flag_errors(flag_errors, 'experiments.optimizers')


def test_bad_data_file_and_workdir_fail_before_training(tmp_path):
  bad = tmp_path / 'bad.npz'
  np.savez(bad, x=np.ones((5, 2)), y=np.array([0, 1, 2, 7, -1]))
  out = _run('experiments.train', '--dataset=npz', f'--data_path={bad}', f'--workdir={tmp_path}/w')
  assert out.returncode != 0 and f'{bad}: label -1 at index 4 is negative' in out.stderr
  blocker = tmp_path / 'file'
  blocker.write_text('')
  out = _run('experiments.train', f'--workdir={blocker}/sub')
  assert (
    out.returncode != 0
    and out.stderr.strip() == f'Error: --workdir={blocker}/sub is not writable: Not a directory.'
  )
  out = _run('experiments.train', '--workdir=')
  assert (
    out.returncode != 0
    and out.stderr.strip() == 'Error: --workdir is empty; name the folder the outputs go to.'
  )
  # Data named as an output inside the workdir (a folder of .npz files looks like an older workdir):
  # refused before the run could replace it, through a link to the folder too.
  data = tmp_path / 'project'
  data.mkdir()
  np.savez(data / 'params.npz', x=np.ones((20, 2)), y=np.arange(20) % 2)
  before = (data / 'params.npz').read_bytes()
  (tmp_path / 'link').symlink_to(data)
  for work in (data, tmp_path / 'link'):
    out = _run('experiments.train', '--dataset=npz', f'--data_path={data}/params.npz', f'--workdir={work}')
    assert out.returncode != 0 and out.stderr.strip() == (
      f'Error: --data_path={data}/params.npz lies inside --workdir={work}, whose files the outputs '
      'replace; choose a --workdir apart from the data.'
    )
  assert (data / 'params.npz').read_bytes() == before and os.listdir(data) == ['params.npz']
  # In a subfolder of the workdir the data is safe (every output is written in the workdir itself).
  (tmp_path / 'w2' / 'data').mkdir(parents=True)
  (tmp_path / 'w2' / workdir_lib.MARKER).write_text('')  # a workdir an earlier run used
  np.savez(
    tmp_path / 'w2' / 'data' / 'd.npz', x=np.random.default_rng(0).normal(size=(40, 2)), y=np.arange(40) % 2
  )
  out = _run(
    'experiments.train',
    '--dataset=npz',
    f'--data_path={tmp_path}/w2/data/d.npz',
    f'--workdir={tmp_path}/w2',
    '--epochs=1',
    '--plots=false',
  )
  assert out.returncode == 0, out.stderr


def test_divergence_exits_nonzero_and_writes_no_nan(tmp_path):
  out = _run(
    'experiments.train',
    '--dataset=diabetes',
    '--loss=l2',
    '--learning_rate=100',
    f'--workdir={tmp_path}',
    '--quiet',
  )
  assert out.returncode == 1
  assert 'Training diverged' in out.stderr and 'learning_rate=100' in out.stderr
  for f in tmp_path.iterdir():
    if f.suffix in ('.json', '.jsonl'):
      assert 'NaN' not in f.read_text() and 'Infinity' not in f.read_text()


def test_ctrl_c_saves_and_resume_is_bit_exact(tmp_path):
  args = ['--epochs=100', '--tol_on=none', '--batch_size=16', '--checkpoint_every=1', '--plots=false']
  whole = _run('experiments.train', *args, f'--workdir={tmp_path / "whole"}', '--quiet')
  assert whole.returncode == 0, whole.stderr
  part = tmp_path / 'part'
  proc = subprocess.Popen(
    [sys.executable, '-m', 'experiments.train', *args, f'--workdir={part}', '--verbose'],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + 120
  for line in proc.stdout:
    if line.startswith('epoch') and int(line.split()[1].split('/')[0]) >= 3:
      proc.send_signal(signal.SIGINT)
      break
    assert time.time() < deadline
  rc = proc.wait(timeout=60)
  proc.stdout.close()
  stderr = proc.stderr.read()
  proc.stderr.close()
  assert rc == 75 and 'checkpoint saved' in stderr and '--resume' in stderr, stderr
  assert os.path.exists(part / 'checkpoint.npz')
  resumed = _run('experiments.train', *args, f'--workdir={part}', '--resume', '--quiet')
  assert resumed.returncode == 0, resumed.stderr
  a, b = np.load(tmp_path / 'whole' / 'params.npz'), np.load(part / 'params.npz')
  np.testing.assert_array_equal(a['W'], b['W'])
  np.testing.assert_array_equal(a['b'], b['b'])
  epochs = [json.loads(x)['epoch'] for x in (part / 'metrics.jsonl').read_text().splitlines()]
  assert epochs == list(range(1, 101))


def test_gradcheck_passes_and_catches_a_planted_bug(tmp_path):
  report = tmp_path / 'gc.json'
  ok = _run('experiments.gradcheck', '--loss=svm', '--method=central', f'--json_out={report}')
  assert ok.returncode == 0, ok.stdout + ok.stderr
  assert json.loads(report.read_text())['passed'] is True
  assert '4 passed, 0 failed' in ok.stdout  # 2 penalties x 2 forms
  bad = _run('experiments.gradcheck', '--loss=softmax', '--method=sparse', '--plant=missing_reg')
  assert bad.returncode == 1 and 'Gradient check FAILED' in bad.stderr


def test_lr_sweep_writes_outputs_and_refuses_bad_flags(tmp_path, flag_errors):
  out = _run(
    'experiments.lr_sweep',
    '--dataset=diabetes',
    '--loss=l2',
    '--lrs=0.01,0.1,100',
    '--regs=0,1e-3',
    '--epochs=5',
    f'--workdir={tmp_path}',
    '--retrain_best',
  )
  assert out.returncode == 0, out.stderr
  assert 'best: learning_rate=0.1' in out.stdout and '2 diverged' in out.stdout
  result = json.loads((tmp_path / 'sweep.json').read_text())
  assert result['num_models'] == 6 and result['best']['diverged_step'] is None
  assert 'test_mse' in result['best_retrained']
  assert len((tmp_path / 'sweep.csv').read_text().splitlines()) == 7
  for png in ('heatmap.png', 'loss_vs_lr.png', 'curves.png'):
    _assert_png(tmp_path / png)
  _assert_flag_errors(flag_errors, 'experiments.lr_sweep')


def test_lr_sweep_where_every_model_diverges_still_writes_its_pictures(tmp_path):
  out = _run(
    'experiments.lr_sweep',
    '--dataset=diabetes',
    '--loss=l2',
    '--lrs=100,1000,10000',  # the grid of the sweep above: its compiled programs
    '--regs=0,1e-3',
    '--epochs=5',
    f'--workdir={tmp_path}',
    '--resume',  # with no checkpoint there: said, and a new sweep starts
  )
  assert out.returncode == 1  # nothing to recommend, said plainly, after the pictures
  assert '0 alive' in out.stdout and '6 diverged' in out.stdout
  assert out.stderr.strip().splitlines() == [  # no traceback, no warning; the flag given is the one named
    f'--resume: {tmp_path}/sweep_checkpoint.npz does not exist; starting a new run.',
    'Every model diverged: lower the values of --lrs.',
  ]
  for png in ('heatmap.png', 'loss_vs_lr.png', 'curves.png'):
    _assert_png(tmp_path / png)


def test_lr_sweep_with_one_end_of_its_range_derives_the_other(tmp_path):
  # The other end was the flag's literal default (1e-4 or 10), where --help promises the derived one.
  out = _run(
    'experiments.lr_sweep', '--lr_max=1', '--num_lrs=3', '--regs=0', '--epochs=1', '--quiet',
    f'--workdir={tmp_path}',
  )  # fmt: skip
  assert out.returncode == 0, out.stderr
  said = next(line for line in out.stdout.splitlines() if 'learning rates from' in line)
  center = float(said.split('learning_rate=auto: ')[1].split()[0])
  rates = sorted({m['learning_rate'] for m in json.loads((tmp_path / 'sweep.json').read_text())['models']})
  assert rates[-1] == pytest.approx(1.0) and rates[0] == pytest.approx(center / 32, rel=2e-3), (rates, said)


def _epoch_lines(stdout):
  return [line for line in stdout.splitlines() if line.startswith('epoch ')]


def test_lr_sweep_over_seeds_reports_mean_and_std(tmp_path):
  start = time.monotonic()
  out = _run(
    'experiments.lr_sweep',
    '--dataset=digits',
    '--lrs=0.05,0.5',
    '--regs=0',
    '--seeds=0,1,2',
    '--epochs=20',
    f'--workdir={tmp_path}',
  )
  assert out.returncode == 0, out.stderr
  # Piped, the progress is a log's: the first epoch's line, one every 5 s at most, and the last.
  lines = _epoch_lines(out.stdout)
  assert len(lines) <= 2 + (time.monotonic() - start) / 5 and lines[-1].startswith('epoch   20/20 '), lines
  result = json.loads((tmp_path / 'sweep.json').read_text())
  assert result['num_models'] == 6 and result['seeds'] == [0, 1, 2]
  assert sorted(r['seed'] for r in result['models']) == [0, 0, 1, 1, 2, 2]
  for row in result['settings']:
    accs = [m['best_val_accuracy'] for m in result['models'] if m['learning_rate'] == row['learning_rate']]
    assert row['best_val_accuracy_mean'] == pytest.approx(np.mean(accs))
    assert row['best_val_accuracy_std'] == pytest.approx(np.std(accs, ddof=1))
  best = max(result['settings'], key=lambda r: r['best_val_accuracy_mean'])
  assert result['best'] == best
  assert f'± {best["best_val_accuracy_std"]:.4f} over 3 seeds' in out.stdout
  assert len((tmp_path / 'settings.csv').read_text().splitlines()) == 3
  _assert_png(tmp_path / 'heatmap.png')
  # Without a validation split, the sweep is judged on the training split.
  out = _run(
    'experiments.lr_sweep',
    '--val_fraction=0',
    '--lrs=0.1',
    '--regs=0',
    '--seeds=0,1',
    '--epochs=2',
    '--verbose',  # every epoch's line
    f'--workdir={tmp_path}/noval',
  )
  assert out.returncode == 0, out.stderr
  assert [line[:12] for line in _epoch_lines(out.stdout)] == ['epoch    1/2', 'epoch    2/2'] * 2  # per seed
  assert 'best_train_accuracy=' in out.stdout and 'over 2 seeds' in out.stdout


def test_search_runs_every_method_within_budget(tmp_path, flag_errors):
  out = _run(
    'experiments.search',
    '--dataset=breast_cancer',
    '--loss=logistic',
    '--budget=40',  # every method on both problems; the budget's size is not the point
    '--population=20',
    f'--workdir={tmp_path}',
  )
  assert out.returncode == 0, out.stderr
  rows = json.loads((tmp_path / 'search.json').read_text())['rows']
  assert {r['method'] for r in rows} == {
    'random search',
    'random local search',
    'genetic algorithm',
    'GD full batch',
    'GD mini-batch',
  }
  assert {r['problem'] for r in rows} == {'2-D blobs', 'breast_cancer'}
  assert all(r['evaluations'] <= 40 for r in rows)
  _assert_png(tmp_path / 'search.png')
  _assert_flag_errors(flag_errors, 'experiments.search')


def test_compilation_cache_is_reused_and_never_changes_results(tmp_path):
  cache = tmp_path / 'cc'
  args = ('--epochs=3', '--quiet', '--plots=false', f'--compilation_cache={cache}')
  first = _run('experiments.train', *args, f'--workdir={tmp_path}/a')
  assert first.returncode == 0, first.stderr
  assert 'compilation cache' not in first.stderr, first.stderr  # JAX warns when it cannot read or write it
  entries = set(os.listdir(cache))
  assert any('epoch' in e for e in entries)  # the training epoch's program was kept
  second = _run('experiments.train', *args, f'--workdir={tmp_path}/b')
  assert second.returncode == 0, second.stderr
  assert 'compilation cache' not in second.stderr, second.stderr
  assert set(os.listdir(cache)) == entries  # nothing compiled anew: every program came from the cache
  a, b = np.load(tmp_path / 'a' / 'params.npz'), np.load(tmp_path / 'b' / 'params.npz')
  np.testing.assert_array_equal(a['W'], b['W'])
  # A cache that cannot be made is named in a warning, and the run goes on (compiling every program:
  # a fixed step spares it the curvature program of learning_rate=auto, which is not the point here).
  (tmp_path / 'file').write_text('')
  out = _run(
    'experiments.train',
    '--epochs=1',
    '--learning_rate=0.1',
    '--quiet',
    '--plots=false',
    f'--compilation_cache={tmp_path}/file/cc',
    f'--workdir={tmp_path}/c',
  )
  assert out.returncode == 0, out.stderr
  assert f'--compilation_cache={tmp_path}/file/cc cannot be used' in out.stderr


def test_hard_cases_experiment(tmp_path):
  out = _run('experiments.hard_cases', '--num_examples=300', '--epochs=30', f'--workdir={tmp_path}')
  assert out.returncode == 0, out.stderr
  rows = {r['case']: r for r in json.loads((tmp_path / 'hard_cases.json').read_text())}
  assert set(rows) == {'parity', 'ring', 'three_modes'}
  for case in rows:
    for tag in ('linear', 'feature_map'):
      _assert_png(tmp_path / f'{case}_{tag}.png')


def test_train_eval_every_marks_evaluated_lines(tmp_path):
  out = _run('experiments.train', f'--workdir={tmp_path}', '--epochs=5', '--eval_every=2', '--plots=false')
  assert out.returncode == 0, out.stderr
  assert 'pass loss' in out.stdout  # the progress line of an epoch that was not evaluated
  lines = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [m['evaluated'] for m in lines] == [False, True, False, True, True]
  assert all('train_pass_loss' in m for m in lines)
  assert all(('val_accuracy' in m) == m['evaluated'] for m in lines)
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['streamed'] is False and summary['flags']['eval_every'] == 2


def test_train_lbfgs_streams_an_npy_file(tmp_path):
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(3, 6)) * 2
  y = rng.integers(0, 3, 400)
  np.save(tmp_path / 'x.npy', (centres[y] + rng.normal(size=(400, 6)) + 4).astype(np.float32))
  np.save(tmp_path / 'y.npy', y)
  out = _run(
    'experiments.train',
    '--dataset=npy',
    f'--data_path={tmp_path / "x.npy"}',
    f'--labels_path={tmp_path / "y.npy"}',
    '--optimizer=lbfgs',
    '--tol=1e-4',
    '--stream',
    '--block_rows=32',
    f'--workdir={tmp_path / "w"}',
    '--plots=false',
  )
  assert out.returncode == 0, out.stderr
  assert 'grad norm' in out.stdout and 'stopped: converged' in out.stdout
  summary = json.loads((tmp_path / 'w' / 'summary.json').read_text())
  assert summary['streamed'] is True and summary['stop_reason'] == 'converged'
  solver = summary['solver']
  assert solver['converged'] and solver['grad_norm'] <= 1e-4
  lines = [json.loads(line) for line in (tmp_path / 'w' / 'metrics.jsonl').read_text().splitlines()]
  assert [m['epoch'] for m in lines] == list(range(1, solver['iterations'] + 1))
  assert lines[-1]['fevals'] == solver['fevals']
  assert lines[-1]['train_loss'] == pytest.approx(solver['objective'], rel=1e-6)  # streamed eval vs solver
  assert summary['final']['test_accuracy'] > 0.8


def test_a_workdir_under_home_is_expanded_not_made_in_the_current_folder(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.train',
      '--workdir=~/sub',
      '--max_epochs=1',
      '--plots=false',
      '--quiet',
    ],
    cwd=tmp_path,
    env={
      **os.environ,
      'HOME': str(tmp_path / 'home'),
      'PYTHONPATH': str(ROOT),  # XDG_CACHE_HOME stays the test run's: its compiled programs, not the home's
    },
    capture_output=True,
    text=True,
    timeout=240,
    check=False,
  )
  assert out.returncode == 0, out.stderr
  assert (tmp_path / 'home' / 'sub' / 'summary.json').exists()
  assert not (tmp_path / '~').exists()
  assert str(tmp_path / 'home' / 'sub') in out.stdout


def test_gradcheck_refuses_a_step_where_a_finite_difference_means_nothing(flag_errors):
  _assert_flag_errors(flag_errors, 'experiments.gradcheck')


def test_a_loss_file_without_a_gradient_trains_with_defaults_and_says_how(tmp_path):
  """No --grad, no --learning_rate: autodiff said once, the derived step printed and in summary.json."""
  loss = tmp_path / 'softplus_svm.py'
  loss.write_text(
    'import jax.numpy as jnp\nimport linear_jax as lj\n\n'
    'def value(scores, labels):\n'
    '  correct = jnp.take_along_axis(scores, labels[:, None], axis=1)\n'
    '  return jnp.sum(jnp.logaddexp(0.0, scores - correct + 1.0) ** 2, axis=1)\n\n'
    "LOSS = lj.Loss(value, 'class')\n"
  )
  out = _run('experiments.train', f'--loss={loss}:LOSS', f'--workdir={tmp_path}/w', '--plots=false')
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert sum('training with autodiff' in line for line in lines) == 1
  assert any(line.startswith('learning_rate=auto: ') and 'power iteration' in line for line in lines)
  assert lines[-1].startswith('test_accuracy: ') and 'stopped: converged' in lines[-1]
  assert len(lines) <= 5  # not a line per epoch
  summary = json.loads((tmp_path / 'w' / 'summary.json').read_text())
  found = summary['learning_rate_found']
  assert summary['learning_rate'] == found['learning_rate'] > 0 and 'hessian_max_eigenvalue' in found
  assert summary['final']['test_accuracy'] > 0.9
  bad = _run('experiments.train', '--learning_rate=fast', f'--workdir={tmp_path}/x')
  assert bad.returncode != 0 and "a number or 'auto'" in bad.stderr and 'Traceback' not in bad.stderr


@pytest.mark.parametrize('module', ['experiments.hard_cases', 'experiments.optimizers', 'experiments.report'])
def test_every_command_that_writes_a_workdir_holds_its_lock(tmp_path, module):
  # optimizers, hard_cases and report took no lock: two of them in one folder both ran, the last writer
  # winning each file, and a train run's folder took their pictures beside its own outputs.
  import fcntl  # pylint: disable=import-outside-toplevel

  proc = subprocess.Popen(  # pylint: disable=consider-using-with
    [sys.executable, '-m', module, f'--workdir={tmp_path}', '--dataset=digits' * (module.endswith('zers'))],
    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
  )  # fmt: skip
  held, deadline = False, time.monotonic() + 120
  try:
    while not held and proc.poll() is None and time.monotonic() < deadline:
      time.sleep(0.05)
      try:
        fd = os.open(tmp_path / workdir_lib.LOCK, os.O_RDONLY)
      except FileNotFoundError:
        continue
      try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
      except BlockingIOError:
        held = True
      finally:
        os.close(fd)
    assert held, (
      f'{module} ran without locking {tmp_path}: {proc.stderr.read() if proc.poll() is not None else ""}'
    )
    second = _run(module, f'--workdir={tmp_path}', timeout=120)
    assert second.returncode == 1 and 'is in use by another run (process' in second.stderr, second.stderr
  finally:
    proc.kill()
    proc.wait()
