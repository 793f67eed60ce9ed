"""The package's import graph, read with `ast`: no cycle, and the layers of docs/ARCHITECTURE.md.

Every `import` counts, at the top of a module and inside functions alike: a
function-level import that closes a cycle is still a cycle.
"""

import ast
import pathlib
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'linear_jax'
MODULES = sorted(p.stem for p in PACKAGE.glob('*.py'))

# The layers of docs/ARCHITECTURE.md, from the bottom: a module may import only from its own
# layer or the layers below (within a layer, the graph must still be acyclic).
LAYERS = (
  (
    'model',
    'validation',
    'checkpoint',
    'plots',
    'report_page',
    'chunks',
    'preemption',
    'workdir',
    'multihost',
  ),
  ('losses', 'more_losses', 'grads', 'grad_sources', 'gradcheck', 'jacobians', 'numpy_check'),
  ('npyfile', 'readers', 'records', 'generators', 'features', 'data'),
  ('convergence', 'config', 'results'),
  ('step',),
  ('parallel',),
  ('stream',),
  ('solvers',),
  ('train',),
  (
    'paths',
    'refit',
    'sweep_state',
    'sweep',
    'search_state',
    'search',
    'search_run',
    'hard_cases',
    'landscape',
    'sweep_run',
    'gradcheck_run',
    'experiment',
    'optimizers_run',
    'report',
  ),
  ('cli', '__main__', '__init__'),
)


def package_imports(name):
  """`{imported module: line}` of linear_jax module `name`, every import in the file."""
  tree = ast.parse((PACKAGE / f'{name}.py').read_text(), filename=f'{name}.py')
  found = {}
  for node in ast.walk(tree):
    targets = []
    if isinstance(node, ast.Import):
      targets = [a.name.split('.')[1] for a in node.names if a.name.startswith('linear_jax.')]
    elif isinstance(node, ast.ImportFrom):
      if node.level == 0 and node.module == 'linear_jax' or node.level == 1 and node.module is None:
        # `from linear_jax import data`: a module, or a name re-exported by the package.
        targets = [a.name if a.name in MODULES else '__init__' for a in node.names]
      elif node.level == 0 and (node.module or '').startswith('linear_jax.'):
        targets = [node.module.split('.')[1]]
      elif node.level == 1:
        targets = [node.module.split('.')[0]]
    for target in targets:
      if target != name:
        found.setdefault(target, node.lineno)
  return found


GRAPH = {name: package_imports(name) for name in MODULES}


def find_cycle(graph):
  """One cycle of `graph` as a list of names (first == last), or `None`."""
  state = {}  # name -> 'open' while on the stack, 'done' once finished

  def visit(node, stack):
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 'open':
        return stack[stack.index(nxt) :] + [nxt]
      if nxt not in state:
        cycle = visit(nxt, stack)
        if cycle:
          return cycle
    stack.pop()
    state[node] = 'done'
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node, [])
      if cycle:
        return cycle
  return None


def test_the_reader_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
  (tmp_path / 'a.py').write_text('from linear_jax import b\n')
  (tmp_path / 'b.py').write_text('def f():\n  from . import c\n  import linear_jax.a\n')
  (tmp_path / 'c.py').write_text('from linear_jax.model import Params\nfrom linear_jax import GRAD_SOURCES\n')
  (tmp_path / 'model.py').write_text('')
  monkeypatch.setattr(sys.modules[__name__], 'PACKAGE', tmp_path)
  monkeypatch.setattr(sys.modules[__name__], 'MODULES', ['a', 'b', 'c', 'model'])
  assert package_imports('a') == {'b': 1}
  assert package_imports('b') == {'c': 2, 'a': 3}
  assert package_imports('c') == {'model': 1, '__init__': 2}
  assert find_cycle({'a': {'b': 1}, 'b': {'c': 2, 'a': 3}, 'c': {}}) == ['a', 'b', 'a']
  assert find_cycle({'a': {'b': 1}, 'b': {'c': 2}, 'c': {}}) is None


def test_the_package_has_no_import_cycle():
  cycle = find_cycle(GRAPH)
  steps = [
    f'{a}.py imports {b} (line {GRAPH[a][b]})' for a, b in zip(cycle or [], (cycle or [])[1:], strict=False)
  ]
  assert cycle is None, 'import cycle: ' + '; '.join(steps)


def test_every_module_has_a_layer():
  placed = [m for layer in LAYERS for m in layer]
  assert sorted(placed) == sorted(set(placed)), 'a module is in two layers'
  assert set(MODULES) - set(placed) == set(), 'new module: add it to LAYERS here and to docs/ARCHITECTURE.md'
  assert set(placed) - set(MODULES) == set(), 'LAYERS names a module that does not exist'


@pytest.mark.parametrize('name', MODULES)
def test_imports_go_down_the_layers(name):
  level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
  up = {m: line for m, line in GRAPH[name].items() if level[m] > level[name]}
  assert not up, f'linear_jax/{name}.py imports from a higher layer: ' + ', '.join(
    f'{m} (line {line})' for m, line in sorted(up.items())
  )


def test_the_step_knows_nothing_of_the_loops_above_it():
  below = {'config', 'grad_sources', 'grads', 'losses', 'model', 'validation', 'convergence', 'more_losses'}
  for name in ('step', 'config', 'model', 'losses', 'grads', 'grad_sources'):
    assert set(GRAPH[name]) <= below, f'{name} imports {sorted(set(GRAPH[name]) - below)}'


def test_no_function_level_import_of_a_package_module_where_a_top_level_one_would_do():
  # Function-level package imports that remain, and why (anything else belongs at the top).
  allowed = {('landscape', 'data'), ('refit', 'train'), ('hard_cases', 'train')}
  late = set()
  for name in MODULES:
    tree = ast.parse((PACKAGE / f'{name}.py').read_text())
    for fn in ast.walk(tree):
      if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for node in ast.walk(fn):
          if isinstance(node, ast.ImportFrom) and node.module == 'linear_jax':
            late |= {(name, a.name) for a in node.names}
  assert late <= allowed, f'function-level imports: {sorted(late - allowed)}'
