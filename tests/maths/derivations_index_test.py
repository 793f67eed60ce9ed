"""docs/derivations.md's index: every derivation one hop from the function that implements it."""

import ast
import pathlib
import re

from linear_jax.maths import losses
from linear_jax.maths import more_losses  # noqa: F401  (registers the losses added through register_loss)

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGE = ROOT / 'docs' / 'derivations.md'


def _index_rows():
  text = PAGE.read_text(encoding='utf-8')
  table = re.search(r'^## Index: .*?\n\n(.*?)\n\n', text, re.S | re.M).group(1)
  return [line for line in table.splitlines()[2:] if line.startswith('|')]


def _defined(path):
  tree = ast.parse((ROOT / path).read_text(encoding='utf-8'))
  return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_file_and_function_the_index_names_exists():
  rows = _index_rows()
  assert len(rows) >= 15
  for row in rows:
    places = re.findall(r'`(linear_jax/[\w/]+\.py):(\w+)`', row)
    assert len(places) == 2, row  # the value and the gradient
    for path, name in places:
      assert (ROOT / path).is_file(), (row, path)
      assert name in _defined(path), f'{path} defines no function {name} (index row {row})'


def test_every_builtin_loss_has_its_derivation_and_its_index_row():
  text = PAGE.read_text(encoding='utf-8')
  headings = re.findall(r'^### [^`]*`(\w+)`', text, re.M)
  builtin = {name for name, loss in losses.LOSSES.items() if loss.value.__module__.startswith('linear_jax.')}
  assert sorted(headings) == sorted(builtin)
  rows = '\n'.join(_index_rows())
  for name in headings:
    loss = losses.get_loss(name)
    assert f':{loss.value.__name__}`' in rows, name
    assert f':{loss.score_grad.__name__}`' in rows, name
