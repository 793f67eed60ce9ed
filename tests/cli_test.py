"""The `linear-jax` command (linear_jax/cli.py): every experiment, from any folder, with its own flags.

Each command runs in a process of its own whose working directory is a fresh
temporary folder, as a user would type it after `pip install -e .`. PYTHONPATH
points at this checkout so the code under test is this tree's even where the
environment's editable install was made from another checkout.

The commands that only read their flags (`--help`, `--helpfull`, the list of
commands, a refused flag or command) run as `python -m MODULE ...` does, in
processes forked from one interpreter that has imported the library modules they
import (conftest.py's `run_commands`): each has its own working folder,
`sys.argv`, flags, output and exit status, and none pays the second and a half of
importing JAX again.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(args, cwd, timeout=240):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])))
  return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _programs_in_experiments_folder():
  """Every experiments/*.py with a `__main__` block, found by reading the files, not by the code tested."""
  return sorted(
    p.stem
    for p in (ROOT / 'experiments').glob('*.py')
    if re.search(r"^if __name__ == '__main__':", p.read_text(), re.M)
  )


def _flag_names(help_text):
  return set(re.findall(r'^\s+--(?:\[no\])?(\w+):', help_text, re.M))


def _jobs():
  """Every command of this file that reads only its flags: `(module, args, needs a fresh folder)`."""
  helps = [(f'experiments.{name}', ('--help',), False) for name in _programs_in_experiments_folder()]
  return [
    ('linear_jax', (), True),
    ('linear_jax', ('train', '--helpfull'), True),
    ('linear_jax', ('lr_sweep', '--helpfull'), True),
    ('experiments.train', ('--helpfull',), False),
    ('experiments.lr_sweep', ('--helpfull',), False),
    ('linear_jax', ('train', '--help'), True),
    ('linear_jax', ('train', '-h'), True),
    ('linear_jax', ('train', '--learning_rate=0'), True),
    ('linear_jax', ('trian', '--epochs=1'), True),
    *helps,
  ]


@pytest.fixture(scope='module')
def commands(tmp_path_factory, run_commands):
  """`{(module, *args): result}` of `_jobs()`, run in ROOT or each in a fresh folder (result.cwd)."""
  jobs = [(m, a, tmp_path_factory.mktemp('cwd') if fresh else ROOT) for m, a, fresh in _jobs()]
  results = run_commands(jobs)
  for (_, _, cwd), result in zip(jobs, results, strict=True):
    result.cwd = cwd
  return {(m, *a): r for (m, a, _), r in zip(jobs, results, strict=True)}


def test_lists_every_experiment_as_a_command(commands):
  out = commands['linear_jax',]
  assert out.returncode == 0, out.stderr
  listed = re.findall(r'^  (\w+)  ', out.stdout, re.M)
  expected = _programs_in_experiments_folder()
  assert listed == expected
  assert {'train', 'gradcheck', 'lr_sweep', 'search', 'hard_cases', 'report'} <= set(listed)
  assert 'common' not in listed
  assert not [name for name in listed if 'bench' in name]  # the benchmark runs from the repository
  assert 'Trains a linear classifier' in out.stdout  # each command with its docstring's first line


def test_command_has_exactly_the_flags_of_its_module(commands):
  for name in ('train', 'lr_sweep'):
    ours = commands['linear_jax', name, '--helpfull']
    theirs = commands[f'experiments.{name}', '--helpfull']
    assert ours.returncode == theirs.returncode, ours.stderr + theirs.stderr  # absl's --helpfull exits 1
    assert _flag_names(ours.stdout) == _flag_names(theirs.stdout)
    assert {'workdir', 'dataset', 'loss', 'learning_rate'} <= _flag_names(ours.stdout)


def _sections(help_text):
  """`{heading: flag names}` of a `--help`: each heading is a line `Heading:` above its flags."""
  sections, heading = {}, None
  for line in help_text.splitlines():
    if re.fullmatch(r'[A-Za-z_][\w ]*:', line):
      heading = line[:-1]
      sections[heading] = set()
    elif heading and (m := re.match(r'^  --(?:\[no\])?(\w+):', line)):
      sections[heading].add(m.group(1))
  return sections


def _own_flags_in_helpfull(help_text):
  """The flags `--helpfull` lists under the command's own file and experiments.common: what it reads."""
  own, keep = set(), False
  for line in help_text.splitlines():
    if re.fullmatch(r'\S.*:', line):
      keep = line.endswith(('experiments/train.py:', 'experiments.common:'))
    elif keep and (m := re.match(r'^\s+--(?:\[no\])?(\w+):', line)):
      own.add(m.group(1))
  return own


def test_help_lists_every_flag_of_the_command_by_group_and_exits_0(commands):
  out = commands['linear_jax', 'train', '--help']
  assert out.returncode == 0, out.stderr
  sections = _sections(out.stdout)
  assert list(sections) == ['Data', 'Model and loss', 'Optimization', 'Run']
  assert {'dataset', 'data_path', 'target_column'} <= sections['Data']
  assert {'loss', 'loss_hparams', 'penalty', 'reg'} <= sections['Model and loss']
  assert {'learning_rate', 'optimizer', 'max_epochs', 'tol'} <= sections['Optimization']
  assert {'workdir', 'resume', 'seed', 'plots'} <= sections['Run']
  listed = set().union(*sections.values())
  assert not listed & {'logtostderr', 'helpfull', 'verbosity', 'chex_n_cpu_devices', 'test_tmpdir'}
  assert '--logtostderr' not in out.stdout and 'chex' not in out.stdout
  assert "(default: '0.003')" in out.stdout.split('--reg:')[1].split('--')[0]  # each flag with its default
  assert out.stdout.startswith('Trains a linear classifier')  # the command's own docstring first
  full = commands['experiments.train', '--helpfull']
  assert listed == _own_flags_in_helpfull(full.stdout) and len(listed) > 50  # every flag it reads
  short = commands['linear_jax', 'train', '-h']
  assert short.returncode == 0 and short.stdout == out.stdout


def test_every_command_has_a_help_that_exits_0(commands):
  for name in _programs_in_experiments_folder():
    out = commands[f'experiments.{name}', '--help']
    assert out.returncode == 0, (name, out.stderr)
    assert 'Run:' in out.stdout and '--logtostderr' not in out.stdout, name


def test_train_runs_from_another_folder_and_writes_there(tmp_path):
  out = _run(
    [sys.executable, '-m', 'linear_jax', 'train', '--epochs=1', '--quiet', '--plots=false'], tmp_path
  )
  assert out.returncode == 0, out.stderr
  assert out.stdout.splitlines()[-1].startswith('test_accuracy: ')
  summary = json.loads((tmp_path / 'workdir' / 'train' / 'summary.json').read_text())  # the default workdir
  assert summary['final']['test_accuracy'] > 0.5 and summary['flags']['epochs'] == 1


def test_bad_flag_is_refused_by_the_experiment_naming_it(commands):
  out = commands['linear_jax', 'train', '--learning_rate=0']
  assert out.returncode == 1
  assert 'learning_rate' in out.stderr


def test_unknown_command_is_refused_listing_the_commands(commands):
  out = commands['linear_jax', 'trian', '--epochs=1']
  assert out.returncode == 2
  assert "unknown command 'trian'" in out.stderr and 'train' in out.stderr.split('commands:')[1]
  assert out.cwd != ROOT and not (out.cwd / 'workdir').exists()


def test_pyproject_installs_the_experiments_inside_the_package():
  project = tomllib.loads((ROOT / 'pyproject.toml').read_text())
  setup = project['tool']['setuptools']
  assert setup['package-dir'] == {'linear_jax.experiments': 'experiments'}
  # Every sub-package of linear_jax is installed, and the experiments inside it: no top-level `experiments`.
  subpackages = {f'linear_jax.{p.parent.name}' for p in (ROOT / 'linear_jax').glob('*/__init__.py')}
  assert sorted(setup['packages']) == sorted({'linear_jax', 'linear_jax.experiments', *subpackages})
  assert 'linear_jax.training' in subpackages
  module, func = project['project']['scripts']['linear-jax'].split(':')
  assert (module, func) == ('linear_jax.cli', 'main')
  from linear_jax import cli  # pylint: disable=import-outside-toplevel

  assert callable(cli.main)


def test_installed_console_script_runs_from_another_folder(tmp_path):
  script = shutil.which('linear-jax', path=os.path.dirname(sys.executable))
  if script is None:  # an environment installed before the script existed: `pip install -e .` adds it
    import pytest  # pylint: disable=import-outside-toplevel

    pytest.skip('the linear-jax script is not installed in this environment')
  out = _run(
    [script, 'gradcheck', '--loss=svm', '--penalty=l2', '--method=central', '--bias_trick=no'], tmp_path
  )
  assert out.returncode == 0, out.stderr
  assert re.search(r'^\d+ passed, 0 failed$', out.stdout, re.M)


def test_an_experiment_added_later_is_a_command_without_registration(tmp_path, monkeypatch, capsys):
  package = tmp_path / 'more_experiments'
  package.mkdir()
  (package / '__init__.py').write_text('')
  (package / 'fit_more.py').write_text(
    '"""Fits more.\n\n    linear-jax fit_more\n"""\nprint(1)\n\nif __name__ == \'__main__\':\n  print(2)\n'
  )
  (package / 'helpers.py').write_text('"""Shared code, not a program."""\n')
  (package / '_private.py').write_text("if __name__ == '__main__':\n  pass\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  from linear_jax import cli  # pylint: disable=import-outside-toplevel

  assert cli.commands('more_experiments') == {'fit_more': 'Fits more.'}
  assert capsys.readouterr().out == ''  # listed by reading the files: no module was run
