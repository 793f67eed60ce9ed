"""The README's two commands stay true: CI runs the README's test command."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _quick_start_commands():
  text = (ROOT / 'README.md').read_text()
  block = re.search(r'## Quick start.*?```(?:bash)?\n(.*?)```', text, re.S).group(1)
  return [line for line in block.splitlines() if line.strip() and not line.startswith('#')]


def test_quick_start_is_exactly_two_commands():
  commands = _quick_start_commands()
  assert len(commands) == 2, commands
  assert 'linear-jax train' in commands[0] and 'pytest' in commands[1]


def test_ci_runs_the_readme_test_command():
  test_command = _quick_start_commands()[1]
  assert test_command in (ROOT / '.ci' / 'run').read_text()


def test_requirements_are_pinned():
  for name in ('requirements.txt', 'requirements-dev.txt'):
    for line in (ROOT / name).read_text().splitlines():
      if line and not line.startswith(('#', '-r')):
        assert '==' in line, f'{name}: {line!r} is not pinned'


def test_the_suite_runs_in_random_order():
  # Installed, pytest-randomly shuffles every run of the README's command and prints the seed
  # (conftest.py prints it under -q too): an order dependency shows up the day it is written.
  lines = (ROOT / 'requirements-dev.txt').read_text().splitlines()
  assert [line for line in lines if line.startswith('pytest-randomly==')], lines


def test_readme_python_examples_run():
  text = (ROOT / 'README.md').read_text()
  blocks = re.findall(r'```python\n(.*?)```', text, re.S)
  assert len(blocks) >= 2
  for block in blocks:
    exec(compile(block, 'README.md', 'exec'), {'__name__': 'readme'})  # noqa: S102 - our own README


def test_the_pieces_table_names_every_module():
  """The README's "The pieces" table matches the layout: every module of the package and every
  experiment is in it, and every module it names exists."""
  text = (ROOT / 'README.md').read_text()
  table = re.search(r'## The pieces\n(.*?)\n\n', text, re.S).group(1)
  named = set(re.findall(r'`linear_jax/(\w+)\.py`', table))
  modules = {p.stem for p in (ROOT / 'linear_jax').glob('*.py')} - {'__init__', '__main__'}
  assert modules - named == set(), f'modules missing from the README table: {sorted(modules - named)}'
  assert named - modules == set(), (
    f'the README table names modules that do not exist: {sorted(named - modules)}'
  )
  rows = {row.split('|')[1].strip(): row for row in table.splitlines() if row.startswith('| `experiments/')}
  for stem in (p.stem for p in (ROOT / 'experiments').glob('*.py') if p.stem != '__init__'):
    row = rows['`experiments/bench_*.py`' if stem.startswith('bench_') else '`experiments/*.py`']
    assert f'`{stem}`' in row, f'experiments/{stem}.py is missing from the README table'
