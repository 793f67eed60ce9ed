"""The benchmark runs from the repository (`python -m benchmarks.run`) and writes what it promises."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(module, *args, timeout=240, env=None):
  return subprocess.run(
    [sys.executable, '-m', module, *args],
    cwd=ROOT,
    env=None if env is None else {**os.environ, **env},
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


GPU = '## GPU results\n\nMachine: NVIDIA H100 80GB HBM3\n\n### 1. Loss\n\n| a |\n'
PART2 = '<!-- section 2 2020-01-02 | old machine -->\n### 2. Training\n\nold part 2\n'


@pytest.fixture(scope='module')
def benchmark_run(tmp_path_factory):
  """Sections 1, 4 and 5 run on the CPU into a results file that has a GPU section and an older CPU one.

  The older CPU section has part 2 (not run now) and part 5 (run again). One run serves both tests
  below: `(completed process, results file's text, --json_out's results, folder)`.
  """
  folder = tmp_path_factory.mktemp('benchmark')
  old = (
    f'# h\n\n## CPU results\n\nMachine: old\n\n{PART2}\n<!-- section 5 2020-01-02 -->\nold part 5\n\n' + GPU
  )
  (folder / 'R.md').write_text(old)
  out = _run(
    'benchmarks.run',
    '--quick',
    '--sections=1,4,5',
    '--repeats=1',
    f'--out={folder}/R.md',
    f'--json_out={folder}/r.json',
    env={'JAX_PLATFORMS': 'cpu'},
  )
  assert out.returncode == 0, out.stderr
  return out, (folder / 'R.md').read_text(), json.loads((folder / 'r.json').read_text()), folder


def test_benchmark_script_runs(benchmark_run):
  _, text, results, _ = benchmark_run
  assert '### 4. Sweeps' in text and '### 5. Gradient checking' in text
  assert results['5']['full']['params'] == 650
  # Section 1 states the compute floor it measured and which bound holds.
  first = results['1']
  assert first['gradient_flops'] == 4 * 1000 * 3072 * 10
  assert first['compute_floor_s'] == pytest.approx(first['gradient_flops'] / first['peak_flops'])
  assert set(first['few_classes_s']) == {'softmax', 'logistic'}
  assert first['verdict'] in text and 'compute floor' in text


def test_benchmark_keeps_the_other_backends_section(benchmark_run):
  from benchmarks import run as benchmark  # pylint: disable=import-outside-toplevel

  gpu = GPU
  old = '# linear_jax benchmark results\n\n## CPU results\n\nold cpu numbers\n\n' + gpu
  merged = benchmark.merge_results(old, '# header\n', '## CPU results\n\nnew cpu numbers\n')
  assert merged == '# header\n\n## CPU results\n\nnew cpu numbers\n\n' + gpu  # replaced in place
  added = benchmark.merge_results('# h\n\n## CPU results\n\ncpu\n', '# h\n', gpu)
  assert added == '# h\n\n## CPU results\n\ncpu\n\n' + gpu
  assert benchmark.merge_results('', '# h\n', '## CPU results\n\nx') == '# h\n\n## CPU results\n\nx\n'
  # The same command on a GPU adds its section: the run of sections 1, 4 and 5 on the CPU went into a
  # file that has a GPU one. The CPU section's part 2, from an earlier run, is kept in its place; its
  # part 5 is measured again.
  _, text, _, tmp_path = benchmark_run
  assert text.endswith(gpu) and 'Machine: old' not in text and 'old part 5' not in text
  assert PART2 in text and text.index('### 1. ') < text.index(PART2) < text.index('### 4. Sweeps')
  assert text.index(PART2) < text.index('### 5. Gradient checking')
  parts = benchmark.section_parts(text.split('## GPU results')[0])
  assert list(parts) == ['1', '2', '4', '5'] and parts['2'][:2] == ('2020-01-02', 'old machine')
  assert (
    parts['5'][0] != '2020-01-02'
    and 'cpu: cpu' in parts['5'][1]
    and 'as stated in each table' in parts['5'][1]
  )
  assert parts['1'][1].endswith('medians of 1 runs') and parts['4'][1] == parts['5'][1]
  assert '- section 2: old machine; 2020-01-02\n' in text and f'- sections 4, 5: {parts["5"][1]}; ' in text
  cpu = {'JAX_PLATFORMS': 'cpu'}
  bad = _run('benchmarks.run', '--quick', '--sections=5,12', f'--out={tmp_path}/R.md', env=cpu)
  assert bad.returncode != 0 and '--sections' in bad.stderr and 'each of 1-11' in bad.stderr
  # A section in its own module states its repeats in its tables; the header must not claim --repeats.
  from benchmarks import harness as bench_harness  # pylint: disable=import-outside-toplevel

  info = {
    'backend': 'cpu',
    'cpu': 'X',
    'cores': 2,
    'python': '3',
    'jax': '0',
    'device': 'cpu',
    'date': '2026-01-02',
  }
  both = bench_harness.section_parts(
    bench_harness.backend_section('', info, {'5': 7, '7': None}, {'5': 'a', '7': 'b'})
  )
  assert both['5'][1].endswith('medians of 7 runs') and both['7'][1].endswith(
    'repeats as stated in each table'
  )
  assert benchmark.data_sheet_bandwidth('NVIDIA H100 80GB HBM3') == 3.35e12
  assert benchmark.data_sheet_bandwidth('NVIDIA H100 PCIe') == 2.0e12
  assert benchmark.data_sheet_bandwidth('NVIDIA H200') == 4.8e12
  assert benchmark.data_sheet_bandwidth('cpu') is None


def test_bench_wholerun_markdown_names_every_figure():
  from benchmarks import wholerun as bench_wholerun  # pylint: disable=import-outside-toplevel

  results = {
    'whole_fit': {
      'n': 10000,
      'd': 3072,
      'epochs': 10,
      'rounds': 5,
      'ex_per_s': {
        'fit on plain NumPy arrays (copied once to 64-byte alignment), --eval_every=epochs': 250000.0,
        bench_wholerun.PREPARED: 300000.0,
        'fit on plain NumPy arrays, evaluation every epoch': 200000.0,
        'SGDClassifier.fit': 25000.0,
        'epochs only (epochs 2 on), --eval_every=epochs': 400000.0,
      },
    },
    'streaming': {
      'n': 10000,
      'epochs': 10,
      'block_rows': 2560,
      'whole_ex_per_s': {'stream': 90.0, 'memory': 100.0},
      'epoch_ex_per_s': {'stream': 85.0, 'memory': 100.0},
    },
    'memory': {
      'n': 200000,
      'd': 1024,
      'data_bytes': 819200000,
      'baseline_vmhwm': 3e8,
      'stream': {'vmhwm': 4e8, 'above_baseline_per_data_byte': 0.12},
      'memory': {'vmhwm': 1.2e9, 'above_baseline_per_data_byte': 1.1},
    },
  }
  table = bench_wholerun.markdown(results)
  assert '| 12.0× | ≥ 12× |' in table and '| 85% | ≥ 80% |' in table and '| 0.12× | ≤ 0.3× |' in table
  assert '| 10.0× |  |' in table  # plain arrays: reported, the target is the prepared splits'
  assert 'epochs only' in table  # epoch-only throughput is labelled as such


def test_benchmark_sections_kept_in_modules_import_beside_its_flags():
  import importlib  # pylint: disable=import-outside-toplevel

  from benchmarks import run as benchmark  # pylint: disable=import-outside-toplevel

  for key in ('6', '7', '8', '9', '10'):
    section = benchmark.SECTIONS[key]
    module = importlib.import_module(f'benchmarks.{section.module}')
    assert callable(module.run) and callable(module.markdown), key
