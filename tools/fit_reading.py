"""The files one in-memory `fit` reaches, and their lines: what a newcomer reads to follow it.

    python tools/fit_reading.py

Loads digits, then trains under `sys.setprofile` and lists every linear_jax
file whose functions the fit called (imports and the package's `__init__`
files aside), with its line count and the total.
"""

import linecache
import os
import sys

import linear_jax as lj
from linear_jax import data

ROOT = os.path.dirname(lj.__file__)


def main():
  ds = data.prepare(data.load('digits'), 'digits', seed=0)
  cfg = lj.TrainConfig(epochs=3)
  seen = set()

  def profile(frame, event, arg):
    del arg
    code = frame.f_code
    if event == 'call' and code.co_filename.startswith(ROOT) and code.co_name != '<module>':
      if not linecache.getline(code.co_filename, code.co_firstlineno).lstrip().startswith('class '):
        seen.add(code.co_filename)  # a function's body, not a class statement run on import

  sys.setprofile(profile)
  lj.fit(cfg, ds)
  sys.setprofile(None)
  files = sorted(f for f in seen if not f.endswith('__init__.py'))
  total = 0
  for f in files:
    with open(f, encoding='utf-8') as fh:
      n = sum(1 for _ in fh)
    total += n
    print(f'{n:6d}  {os.path.relpath(f, os.path.dirname(ROOT))}')
  print(f'{total:6d}  in {len(files)} files')


if __name__ == '__main__':
  main()
