"""The package's import graph, read with `ast`: no cycle, and the layers of docs/ARCHITECTURE.md.

The layers are the sub-packages: a module may import from its own package
and the packages below it, never from one above. Every `import` counts, at
the top of a module and inside functions alike: a function-level import that
closes a cycle is still a cycle.
"""

import ast
import pathlib
import re
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'linear_jax'

# The sub-packages, from the bottom: the lecture's maths, data, the pure step, the data path, the
# solvers, the fit loop, tuning on top of fits, and the runs that write a command's outputs.
LAYERS = ('maths', 'data', 'optim', 'solvers', 'datapath', 'training', 'tuning', 'runs')
TOP = ('__init__', '__main__', '_stack', 'cli')  # the package root: the public names, the command, its frames


def modules(package=None):
  """`['maths.model', ..., 'cli']`: every module of the package, named from its root."""
  root = package or PACKAGE
  names = []
  for path in sorted(root.rglob('*.py')):
    rel = path.relative_to(root).with_suffix('')
    parts = rel.parts[:-1] if rel.name == '__init__' and len(rel.parts) > 1 else rel.parts
    names.append('.'.join(parts))
  return names


MODULES = modules()


def _path(name):
  if name in TOP:
    return PACKAGE / f'{name}.py'
  parts = name.split('.')
  return PACKAGE.joinpath(*parts).with_suffix('.py') if len(parts) > 1 else PACKAGE / name / '__init__.py'


def _resolve(dotted):
  """The module of `MODULES` that `linear_jax.<dotted>` (a module or a name in one) names."""
  parts = dotted.split('.') if dotted else []
  while parts:
    if '.'.join(parts) in MODULES:
      return '.'.join(parts)
    parts.pop()
  return '__init__'


def package_imports(name):
  """`{imported module: line}` of linear_jax module `name` (e.g. 'training.train'), every import."""
  tree = ast.parse(_path(name).read_text(), filename=str(_path(name)))
  here = name.split('.')[:-1] if name not in TOP and '.' in name else [name] if name not in TOP else []
  found = {}
  for node in ast.walk(tree):
    targets = []
    if isinstance(node, ast.Import):
      targets = [
        _resolve(a.name[len('linear_jax.') :]) for a in node.names if a.name.startswith('linear_jax.')
      ]
    elif isinstance(node, ast.ImportFrom):
      if node.level == 0 and (node.module or '').split('.')[0] == 'linear_jax':
        base = node.module[len('linear_jax') :].lstrip('.')
      elif node.level > 0:
        base = '.'.join([*here[: len(here) - node.level + 1], *([node.module] if node.module else [])])
      else:
        continue
      targets = [_resolve(f'{base}.{a.name}' if base else a.name) for a in node.names]
    for target in targets:
      if target != name:
        found.setdefault(target, node.lineno)
  return found


GRAPH = {name: package_imports(name) for name in MODULES}


def layer(name):
  """The index of `name`'s package in `LAYERS` (the root's modules sit on top)."""
  top = name.split('.')[0]
  return LAYERS.index(top) if top in LAYERS else len(LAYERS)


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


def test_the_reader_sees_function_level_relative_and_package_imports(tmp_path, monkeypatch):
  (tmp_path / 'maths').mkdir()
  (tmp_path / 'data').mkdir()
  (tmp_path / 'maths' / '__init__.py').write_text('')
  (tmp_path / 'data' / '__init__.py').write_text('from linear_jax.data.a import f\n')
  (tmp_path / 'maths' / 'model.py').write_text(
    'def f():\n  from . import losses\n  import linear_jax.data.a\n'
  )
  (tmp_path / 'maths' / 'losses.py').write_text('from linear_jax.maths.model import Params\n')
  (tmp_path / 'data' / 'a.py').write_text(
    'from linear_jax.maths import model\nfrom linear_jax import objective\n'
  )
  (tmp_path / '__init__.py').write_text('')
  monkeypatch.setattr(sys.modules[__name__], 'PACKAGE', tmp_path)
  monkeypatch.setattr(sys.modules[__name__], 'MODULES', modules(tmp_path))
  assert sorted(MODULES) == ['__init__', 'data', 'data.a', 'maths', 'maths.losses', 'maths.model']
  assert package_imports('maths.model') == {'maths.losses': 2, 'data.a': 3}
  assert package_imports('maths.losses') == {'maths.model': 1}
  assert package_imports('data.a') == {'maths.model': 1, '__init__': 2}
  assert package_imports('data') == {'data.a': 1}
  assert layer('data.a') > layer('maths.model') and layer('cli') == len(LAYERS)
  assert find_cycle({'a': {'b': 1}, 'b': {'c': 2, 'a': 3}, 'c': {}}) == ['a', 'b', 'a']
  assert find_cycle({'a': {'b': 1}, 'b': {'c': 2}, 'c': {}}) is None


def test_every_module_lives_in_a_layer_package():
  loose = [m for m in MODULES if m not in TOP and m.split('.')[0] not in LAYERS]
  assert not loose, f'modules outside the layer packages {LAYERS}: {loose}'
  assert {m.split('.')[0] for m in MODULES if '.' in m} == set(LAYERS)


def test_the_package_has_no_import_cycle():
  cycle = find_cycle(GRAPH)
  steps = [
    f'{a} imports {b} (line {GRAPH[a][b]})' for a, b in zip(cycle or [], (cycle or [])[1:], strict=False)
  ]
  assert cycle is None, 'import cycle: ' + '; '.join(steps)


@pytest.mark.parametrize('name', MODULES)
def test_imports_go_down_the_layers(name):
  up = {m: line for m, line in GRAPH[name].items() if layer(m) > layer(name)}
  assert not up, f'linear_jax.{name} imports from a higher layer: ' + ', '.join(
    f'{m} (line {line})' for m, line in sorted(up.items())
  )


def test_the_step_knows_nothing_of_the_loops_above_it():
  for name in MODULES:
    if name.split('.')[0] in ('maths', 'optim'):
      above = sorted(m for m in GRAPH[name] if m.split('.')[0] not in ('maths', 'optim'))
      assert not above, f'{name} imports {above}'


def test_only_the_data_path_reaches_its_streaming_and_multi_process_code():
  """Above the seam, modules ask `datapath.factory` for a path; none imports stream, parallel or
  multihost, or branches on streaming, data parallelism or the process count."""
  inner = {'datapath.stream', 'datapath.parallel', 'datapath.multihost'}
  for name in MODULES:
    if not name.startswith('datapath'):
      assert not inner & set(GRAPH[name]), f'linear_jax.{name} imports {sorted(inner & set(GRAPH[name]))}'
  branch = re.compile(
    r'^\s*(if|elif|while)\b.*(process_count|process_index|should_stream|\.stream\b|\.parallel\b)'
  )
  for name in MODULES:
    if not name.startswith('datapath'):
      for number, line in enumerate(_path(name).read_text().splitlines(), 1):
        assert not branch.search(line), f'linear_jax.{name}, line {number}, branches on the data path: {line}'
