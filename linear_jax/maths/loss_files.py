"""A loss from the user's own file: `path.py:NAME` or `module:NAME`, loaded once by `losses.get_loss`.

The text before the last colon is a Python file (it ends in `.py`, holds a
path separator or `~`, or names a file that exists) or else a module to
import; the text after it names the object in it. Errors name the text given
and say what was wrong: no such file, not a Python file, an import that
raised or exited, no such name. Whether the object is a `Loss` is
`get_loss`'s to check.
"""

import hashlib
import importlib
import importlib.util
import os


def _exec_file(spec, path):
  """The module of the user's file `path` (`spec` is the flag's text, for errors), run once."""
  if not os.path.exists(path):
    raise ValueError(f'Loss {spec!r}: no file {path}.')
  if not os.path.isfile(path) or not path.endswith('.py'):
    what = 'a folder, not' if os.path.isdir(path) else 'not'
    raise ValueError(
      f'Loss {spec!r}: {path} is {what} a Python file; write FILE.py:NAME (a file ending in .py) '
      'or package.module:NAME.'
    )
  module_name = f'linear_jax_user_loss_{abs(hash(path))}'
  module_spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SystemExit as e:  # sys.exit() in the file would otherwise end the run with nothing done
    raise ValueError(
      f'Loss {spec!r}: {path} exited while it was imported (sys.exit({e.code!r})); '
      'a loss file should only define its Loss records.'
    ) from None
  except Exception as e:  # noqa: BLE001 - the user's file, reported with its name
    raise ValueError(f'Loss {spec!r}: {path} raised {type(e).__name__} on import: {e}') from e
  return module


def load_object(spec):
  """The object `NAME` of `'path/to/file.py:NAME'` or `'package.module:NAME'`."""
  where, _, attr = spec.rpartition(':')
  if not where or not attr:
    raise ValueError(f'Loss {spec!r}: write FILE.py:NAME or package.module:NAME.')
  path = os.path.abspath(os.path.expanduser(where))
  if where.endswith('.py') or os.sep in where or where.startswith('~') or os.path.isfile(path):
    _LOADED[spec] = _sha256(path)  # before it runs: what the objects below were made from
    module = _exec_file(spec, path)
  else:
    try:
      module = importlib.import_module(where)
    except Exception as e:  # noqa: BLE001
      raise ValueError(
        f'Loss {spec!r}: cannot import module {where!r}: {type(e).__name__}: {e} '
        '(a loss is FILE.py:NAME or package.module:NAME).'
      ) from e
    _LOADED[spec] = _sha256(getattr(module, '__file__', None))
  if not hasattr(module, attr):
    raise ValueError(f'Loss {spec!r}: {where} defines no {attr!r}.')
  return getattr(module, attr)


# The SHA-256 of the file each `--loss` text was loaded from, as it was loaded (`contents_digest`).
_LOADED = {}


def _sha256(path):
  if not path or not os.path.isfile(path):
    return None
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def contents_digest(spec) -> str | None:
  """The SHA-256 of the file a `FILE.py:NAME` or `package.module:NAME` loss comes from, as this process
  loaded it (`None` for a built-in name, a `Loss`, or no file): a resume compares it, since the same text
  names the file however it was edited, before the run or during it. Not loaded yet: the file now."""
  if not isinstance(spec, str) or ':' not in spec:
    return None
  if spec in _LOADED:
    return _LOADED[spec]
  where = spec.rpartition(':')[0]
  path = os.path.abspath(os.path.expanduser(where))
  if not os.path.isfile(path):
    try:
      path = importlib.util.find_spec(where).origin
    except (ImportError, ValueError, AttributeError):
      return None
  return _sha256(path)
