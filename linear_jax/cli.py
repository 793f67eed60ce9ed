"""The `linear-jax` command: every experiment, from any folder, with that experiment's own flags.

    linear-jax train --dataset=digits          # the same as python -m experiments.train --dataset=digits
    python -m linear_jax gradcheck --loss=all  # the same command without the script
    linear-jax --help                          # the commands

The commands are the modules of the experiments package that run as programs
(those with an `if __name__ == '__main__':` block), found when the command
runs, so an experiment added later is a command too. Installed, that package
is `linear_jax.experiments` (pyproject.toml maps the repository's
`experiments/` folder there, so no top-level package named `experiments` is
installed); in a source checkout used without installing, it is the
`experiments/` folder beside `linear_jax/`.
"""

import ast
import importlib.util
import os
import pkgutil
import runpy
import sys

PROG = 'linear-jax'
INSTALLED = 'linear_jax.experiments'


def experiments_package() -> str:
  """The importable name of the experiments package: `linear_jax.experiments` or `experiments`."""
  if importlib.util.find_spec(INSTALLED) is not None:
    return INSTALLED
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if os.path.isfile(os.path.join(root, 'experiments', 'common.py')):  # a source checkout, not installed
    if root not in sys.path:
      sys.path.insert(0, root)
    return 'experiments'
  raise SystemExit(f'{PROG}: the experiments are not installed; reinstall linear_jax with pip.')


def _runs_as_program(tree: ast.Module) -> bool:
  """Whether a module's syntax tree has a top-level `if __name__ == '__main__':`."""
  for node in tree.body:
    test = getattr(node, 'test', None) if isinstance(node, ast.If) else None
    if (
      isinstance(test, ast.Compare)
      and isinstance(test.left, ast.Name)
      and test.left.id == '__name__'
      and any(isinstance(c, ast.Constant) and c.value == '__main__' for c in test.comparators)
    ):
      return True
  return False


def commands(package: str) -> dict[str, str]:
  """`{name: first line of its docstring}` for every module of `package` that runs as a program.

  Modules are read, not imported, so listing the commands runs no experiment's code.
  """
  spec = importlib.util.find_spec(package)
  found = {}
  for info in pkgutil.iter_modules(spec.submodule_search_locations):
    if info.ispkg or info.name.startswith('_'):
      continue
    origin = importlib.util.find_spec(f'{package}.{info.name}').origin
    if not origin or not origin.endswith('.py'):
      continue
    with open(origin, encoding='utf-8') as f:
      tree = ast.parse(f.read(), origin)
    if _runs_as_program(tree):
      found[info.name] = (ast.get_docstring(tree) or '').strip().split('\n', 1)[0]
  return dict(sorted(found.items()))


def usage(found: dict[str, str]) -> str:
  width = max(map(len, found), default=0)
  lines = [
    f'usage: {PROG} COMMAND [--flag=value ...]    (or: python -m linear_jax COMMAND ...)',
    '',
    'Runs an experiment with exactly the flags of `python -m experiments.COMMAND`; '
    f'`{PROG} COMMAND --help` lists them.',
    '',
    'commands:',
  ]
  lines += [f'  {name:<{width}}  {doc}' for name, doc in found.items()]
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
  """Runs `linear-jax COMMAND flags...`: the experiment's module as `__main__`, with its flags.

  Args:
    argv: the arguments after the program's name (default `sys.argv[1:]`).

  Returns:
    0 after the list of commands; 2 for an unknown command. An experiment
    ends the process itself (absl's `app.run` exits with its status).
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  package = experiments_package()
  found = commands(package)
  if not argv or argv[0] in ('-h', '--help', '-help', 'help'):
    print(usage(found))
    return 0
  name, rest = argv[0], argv[1:]
  if name not in found:
    print(f'{PROG}: unknown command {name!r}; commands: {", ".join(found)}', file=sys.stderr)
    return 2
  sys.argv = [name, *rest]  # runpy then puts the module's path in argv[0], as `python -m` does
  runpy.run_module(f'{package}.{name}', run_name='__main__', alter_sys=True)
  return 0
