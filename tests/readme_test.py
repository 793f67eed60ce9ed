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


def test_readme_python_examples_run():
  text = (ROOT / 'README.md').read_text()
  blocks = re.findall(r'```python\n(.*?)```', text, re.S)
  assert len(blocks) >= 2
  for block in blocks:
    exec(compile(block, 'README.md', 'exec'), {'__name__': 'readme'})  # noqa: S102 - our own README
