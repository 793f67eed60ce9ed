"""The benchmark's harness: medians of alternated runs, the machine's description, and the results file.

Every section of `benchmarks/run.py` times its contenders with `median_times`, which takes
turns between them so that a noisy neighbour slows every side of a ratio alike. `backend_section`
and `merge_results` write one backend's section into `benchmarks/RESULTS.md`, keeping the other
backends' sections and, within this backend's, the parts of sections not run this time.
"""

import os
import platform
import re
import subprocess
import time

from absl import flags
import numpy as np

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Memory bandwidth from the vendors' data sheets (GB/s), by a part of
# `device_kind`, the most specific first: a GPU section also states what
# fraction of its card's bandwidth the read and the gradient reach.
DATA_SHEET_BANDWIDTH = (
  ('H200', 4800),
  ('H100 NVL', 3900),
  ('H100 PCIe', 2000),
  ('H100', 3350),
  ('A100 80GB PCIe', 1935),
  ('A100-SXM4-80GB', 2039),
  ('A100', 1555),
)


def data_sheet_bandwidth(device_kind):
  """The card's data-sheet memory bandwidth in bytes/s, or `None` if not listed."""
  for part, gbs in DATA_SHEET_BANDWIDTH:
    if part in device_kind:
      return gbs * 1e9
  return None


def median_times(fns, repeats=None, rounds=3, warmup=1):
  """Median wall time in seconds of each of `{name: fn}`, measured in `rounds` turns.

  Each round gives every function `warmup` untimed calls, then its share of
  the `repeats` timed calls, one function after another. Taking turns spreads
  a noisy neighbour's bursts over all of them, so their ratios hold on a busy
  machine; a block of calls per turn keeps one library's idle threads (OpenMP
  spins after a parallel region) from slowing the next one's first call.
  """
  repeats = repeats or getattr(FLAGS, 'repeats', 7)  # the benchmark's --repeats, when it is defined
  rounds = max(1, min(rounds, repeats))
  times = {name: [] for name in fns}
  for r in range(rounds):
    share = repeats // rounds + (r < repeats % rounds)
    for name, fn in fns.items():
      for _ in range(warmup):
        fn()
      for _ in range(share):
        t = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - t)
  return {name: float(np.median(ts)) for name, ts in times.items()}


def median_time(fn, repeats=None, warmup=1):
  """Median wall time of `fn()` in seconds, after `warmup` untimed calls."""
  return median_times({'': fn}, repeats, rounds=1, warmup=warmup)['']


def machine():
  import jax  # pylint: disable=import-outside-toplevel

  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  dev = jax.devices()[0]
  return {
    'cpu': cpu,
    'cores': os.cpu_count(),
    'python': platform.python_version(),
    'jax': jax.__version__,
    'backend': jax.default_backend(),
    'device': f'{dev.platform}: {dev.device_kind}',
    'date': time.strftime('%Y-%m-%d'),
  }


def wall_time(cmd):
  """Wall seconds and stdout of the command `cmd`, run from the repository's root."""
  t = time.perf_counter()
  res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
  return time.perf_counter() - t, res.stdout


def markdown(title, table):
  """A `### title` and the table `[header, *rows]` as markdown."""
  lines = [f'### {title}', '', '| ' + ' | '.join(table[0]) + ' |', '|' + ' --- |' * len(table[0])]
  lines += ['| ' + ' | '.join(r) + ' |' for r in table[1:]]
  return '\n'.join(lines) + '\n'


def merge_results(previous, header, section):
  """The results file with `section` in place of the one of its backend; other backends' are kept.

  So the same command run on a CPU and on a GPU leaves both sections in one file.
  """
  title = section.split('\n', 1)[0]
  parts = re.split(r'(?m)^(?=## )', previous)[1:]  # the old sections, each from its '## ' line
  kept = [p.rstrip('\n') + '\n' for p in parts if p.split('\n', 1)[0] != title]
  mine = section.rstrip('\n') + '\n'
  old_titles = [p.split('\n', 1)[0] for p in parts]
  if title in old_titles:  # keep its place
    kept.insert(old_titles.index(title), mine)
  else:
    kept.append(mine)
  return header + '\n' + '\n'.join(kept)


_MARK = re.compile(r'(?m)^<!-- section (\S+) (\d{4}-\d{2}-\d{2})(?: \| (.*?))? -->\n')


def section_parts(text):
  """`{key: (date, where, markdown)}` of a backend section's parts, from their marks.

  A part starts with `<!-- section K DATE | WHERE -->`: WHERE is the machine, the software and the
  number of repeats it was measured with (empty in marks that predate it).
  """
  pieces = _MARK.split(text)
  keys, dates, wheres, bodies = pieces[1::4], pieces[2::4], pieces[3::4], pieces[4::4]
  return {k: (d, w or '', b) for k, d, w, b in zip(keys, dates, wheres, bodies, strict=True)}


def describe(info, repeats):
  """One line naming the machine, the software and the repeats (`None`: the section states its own)."""
  return (
    f'{info["cpu"]}, {info["cores"]} cores; Python {info["python"]}, JAX {info["jax"]} ({info["device"]}); '
    + (f'medians of {repeats} runs' if repeats is not None else 'repeats as stated in each table')
  )


def backend_section(previous, info, repeats, new_parts):
  """This backend's section: the parts measured now, and the earlier runs' parts of the sections not run.

  `repeats`: the runs behind each median, one number for every part or `{key: number or None}`
  (`None` for a section that chooses its own and states them).

  So `--sections=8` re-measures section 8 and keeps sections 1-7 and 9 as they were. Every part keeps
  the date, machine and software it was measured with, and the section's first lines say which
  sections were measured where and when.
  """
  title = f'## {info["backend"].upper()} results'
  old = [p for p in re.split(r'(?m)^(?=## )', previous) if p.split('\n', 1)[0] == title]
  parts = section_parts(old[0]) if old else {}
  count = repeats if isinstance(repeats, dict) else dict.fromkeys(new_parts, repeats)
  parts.update({key: (info['date'], describe(info, count[key]), text) for key, text in new_parts.items()})
  order = sorted(parts, key=lambda k: (int(k), k) if k.isdigit() else (1 << 30, k))
  runs = {}  # (date, where) -> the sections measured so, in order
  for key in order:
    runs.setdefault(parts[key][:2], []).append(key)
  lines = [title, '']
  rule = (
    'Times are medians after warm-up unless a table says otherwise; '
    'ratios are between numbers measured in the same run.'
  )
  if len(runs) == 1:
    (date, place), _ = next(iter(runs.items()))
    lines.append(f'Machine: {place}; {date}. {rule}')
  else:
    lines += [f'{rule} Each section was measured as follows:', '']
    for (date, place), keys in runs.items():
      lines.append(
        f'- section{"s" if len(keys) > 1 else ""} {", ".join(keys)}: {place or "not recorded"}; {date}'
      )
  lines.append('')
  for key in order:
    date, place, text = parts[key]
    mark = f'<!-- section {key} {date}' + (f' | {place}' if place else '') + ' -->'
    lines += [mark, text.rstrip('\n'), '']
  return '\n'.join(lines)
