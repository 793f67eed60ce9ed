"""The README and the manual in docs/ stay true: CI runs the README's test command, every Python block
of them runs as written, every link resolves, and the README's map of the folders is the package's."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
PAGES = [README, *sorted((ROOT / 'docs').glob('*.md'))]
MAX_README_LINES = 250

# A fenced block: its info string (```python, ```bash, ``` ...) and its text.
FENCE = re.compile(r'^```([^\n`]*)\n(.*?)^```[ \t]*$', re.S | re.M)
# The info strings a page may use. A block fenced ```python no-run is shown but not run (the text of a
# file that needs what the reader has, say); keep them rare: each must be counted in NO_RUN, with why.
INFO_STRINGS = {'', 'bash', 'python', 'python no-run'}
NO_RUN: dict[str, int] = {}  # {'docs/page.md': count}: none today, every Python block runs
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')

# Runs one page's blocks in order in one namespace, as a reader pasting them one after another would.
# Each block is compiled at its own line of the page, so a traceback names the page and its line.
RUNNER = """
import json, sys
page, blocks = json.load(open(sys.argv[1], encoding='utf-8'))
namespace = {'__name__': '__main__'}
for line, code in blocks:
  print(f'--- {page}, the block at line {line}', flush=True)
  exec(compile('\\n' * line + code, page, 'exec'), namespace)
"""


def _name(page):
  return page.relative_to(ROOT).as_posix()


def _blocks(page):
  """`(info string, line of the block's first line of code (0-based), code)` for every fenced block."""
  text = page.read_text(encoding='utf-8')
  return [(m.group(1).strip(), text.count('\n', 0, m.start(2)), m.group(2)) for m in FENCE.finditer(text)]


def _quick_start_commands():
  text = README.read_text()
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


def test_readme_fits_a_few_screens():
  lines = len(README.read_text().splitlines())
  assert lines <= MAX_README_LINES, f'README.md has {lines} lines; move the detail to a page of docs/'


def test_the_suite_runs_in_random_order():
  # Installed, pytest-randomly shuffles every run of the README's command and prints the seed
  # (conftest.py prints it under -q too): an order dependency shows up the day it is written.
  lines = (ROOT / 'requirements-dev.txt').read_text().splitlines()
  assert [line for line in lines if line.startswith('pytest-randomly==')], lines


def test_the_readme_links_every_page_of_the_manual():
  linked = {target.split('#')[0] for target in LINK.findall(README.read_text())}
  pages = {_name(page) for page in PAGES[1:]}
  assert pages - linked == set(), f'pages of docs/ the README does not link: {sorted(pages - linked)}'
  for target in linked:
    if target.startswith('docs/'):
      assert (ROOT / target).is_file(), f'README links {target}, which does not exist'


def _anchors(page):
  """The anchors GitHub gives the headings of a Markdown page."""
  text = FENCE.sub('', page.read_text(encoding='utf-8'))  # a '# comment' in a block is no heading
  anchors = set()
  for heading in re.findall(r'^#{1,6} (.+)$', text, re.M):
    anchors.add(re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-'))
  return anchors


@pytest.mark.parametrize('page', PAGES, ids=_name)
def test_every_relative_link_resolves(page):
  """A link to a file points at one that exists, and a link to a heading at one the page has."""
  for target in LINK.findall(page.read_text(encoding='utf-8')):
    if re.match(r'[a-z]+:', target):  # https:, mailto:
      continue
    path, _, anchor = target.partition('#')
    linked = (page.parent / path).resolve() if path else page
    assert linked.exists(), f'{_name(page)} links {target}, which does not exist'
    if anchor and linked.suffix == '.md':
      assert anchor in _anchors(linked), f'{_name(page)} links {target}, a heading that does not exist'


def test_every_test_a_page_cites_exists():
  """A page that gives a test as its evidence (`test_...`) names one that tests/ defines."""
  defined = set(
    re.findall(
      r'^def (test_\w+)\(',
      '\n'.join(p.read_text(encoding='utf-8') for p in (ROOT / 'tests').rglob('*_test.py')),
      re.M,
    )
  )
  for page in PAGES:
    for name in re.findall(r'`(test_\w+)`', page.read_text(encoding='utf-8')):
      assert name in defined, f'{_name(page)} cites {name}, which no test defines'


@pytest.mark.parametrize('page', PAGES, ids=_name)
def test_python_blocks_run_as_written(page, tmp_path):
  """Every ```python block of the page runs, in order, in one namespace, in a fresh process.

  The process starts without float64: a block that needs it turns it on itself, as a reader's would.
  """
  blocks = _blocks(page)
  infos = {info for info, _, _ in blocks}
  assert infos <= INFO_STRINGS, f'{_name(page)}: unknown fence info strings {sorted(infos - INFO_STRINGS)}'
  skipped = sum(info == 'python no-run' for info, _, _ in blocks)
  assert skipped == NO_RUN.get(_name(page), 0), f'{_name(page)}: {skipped} ```python no-run block(s)'
  code = [(line, text) for info, line, text in blocks if info == 'python']
  if page == README:
    assert len(code) >= 2, 'the README shows a gradient check and a loss of your own in Python'
  if not code:
    return
  script = tmp_path / 'blocks.json'
  script.write_text(json.dumps([_name(page), code]), encoding='utf-8')
  env = {k: v for k, v in os.environ.items() if k != 'JAX_ENABLE_X64'}
  run = subprocess.run(
    [sys.executable, '-c', RUNNER, str(script)],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert run.returncode == 0, f'{_name(page)}:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}'


# The top-level folders of the README's map, besides the sub-packages of linear_jax/.
TOP_FOLDERS = ('experiments', 'benchmarks', 'docs', 'notebooks', 'tests')


def _folder_map_mismatches(root):
  """What the README's map of the folders and the layout under `root` disagree on."""
  text = (root / 'README.md').read_text(encoding='utf-8')
  folders = re.search(r'^## The folders\n(.*?)(?=^## )', text, re.S | re.M).group(1)
  named = set(re.findall(r'`linear_jax/(\w+)/`', folders))
  packages = {p.parent.name for p in (root / 'linear_jax').glob('*/__init__.py')}
  problems = [f'linear_jax/{name}/ is missing from the README map' for name in sorted(packages - named)]
  problems += [
    f'the README map names linear_jax/{name}/, which is no package' for name in sorted(named - packages)
  ]
  for folder in TOP_FOLDERS:
    if f'`{folder}/`' not in folders:
      problems.append(f'{folder}/ is missing from the README map')
    if not (root / folder).is_dir():
      problems.append(f'the README map names {folder}/, which does not exist')
  return problems


def test_the_folder_map_names_every_sub_package():
  """Every sub-package of linear_jax/ (a folder with __init__.py) is in the README's map of the
  folders, and every folder the map names exists."""
  assert _folder_map_mismatches(ROOT) == []
