"""hard_cases and report: an output that cannot be written, or a size past what hard_cases draws, is one
line (`Error: ...`, exit 1)."""

import os
import re
import subprocess
import sys

import pytest

from experiments import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_error_line_names_the_file_and_the_reason():
  assert common.error_line(PermissionError(13, 'Permission denied', '/w/report.html')) == (
    'Error: /w/report.html: Permission denied.'
  )
  assert common.error_line(OSError(28, 'No space left on device')) == 'Error: No space left on device.'
  assert (
    common.error_line(ValueError('x.json: cannot be written (full).'))
    == 'Error: x.json: cannot be written (full).'
  )


def test_hard_cases_with_a_folder_in_place_of_its_json_says_so_in_one_line(tmp_path):
  (tmp_path / '.linear_jax-workdir').write_text('')  # a workdir of ours, where a folder took a file's name
  (tmp_path / 'hard_cases.json').mkdir()
  res = subprocess.run(
    [sys.executable, '-m', 'experiments.hard_cases', '--epochs=1', '--num_examples=100',
     f'--workdir={tmp_path}'],
    check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  assert res.returncode == 1 and 'Traceback' not in res.stderr, res.stderr[-2000:]
  assert res.stderr.strip().splitlines()[-1] == (
    f'Error: {tmp_path}/hard_cases.json is a folder, where a file is to be written; move it or choose '
    'another folder.'
  )


@pytest.mark.parametrize('n', [1000001, 10])  # 10 made a test split of 2 rows: XOR "solved" at 100%
def test_hard_cases_refuses_more_examples_than_its_pictures_draw_or_too_few_to_test_before_any_work(
  tmp_path, n
):
  res = subprocess.run(
    [sys.executable, '-m', 'experiments.hard_cases', f'--num_examples={n}', f'--workdir={tmp_path}/w'],
    check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  assert res.returncode == 1 and res.stderr.strip().splitlines() == [
    f'Error: --num_examples={n}: {n} is not an integer in the range [100, 1000000] (--help lists the flags.)'
  ], res.stderr[-2000:]
  assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize(
  'error', ['PermissionError(13, "Permission denied", w + "/report.html")', 'ValueError("x")']
)
def test_report_that_cannot_write_says_so_in_one_line(tmp_path, error):
  """The report's work replaced by one that fails as a write does (a full run takes minutes)."""
  script = (
    'import runpy, sys\n'
    'from linear_jax.runs import report\n'
    f'def build(w, *a):\n  raise {error}\n'
    'report.build = build\n'
    "sys.argv = ['report', sys.argv[1]]\n"
    "runpy.run_module('experiments.report', run_name='__main__')\n"
  )
  res = subprocess.run(
    [sys.executable, '-c', script, f'--workdir={tmp_path}'],
    check=False,
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert res.returncode == 1 and 'Traceback' not in res.stderr, res.stderr[-2000:]
  want = f'Error: {tmp_path}/report.html: Permission denied.' if 'Permission' in error else 'Error: x'
  assert res.stderr.strip().splitlines()[-1] == want


def test_report_command_prints_where_it_wrote_and_the_gradient_checks_verdict(tmp_path):
  """The command around `report.build` (the build itself: tests/runs/report_test.py), given its answer."""
  script = (
    'import runpy, sys\n'
    'from linear_jax.runs import report\n'
    'PASSED = sys.argv[2] == "pass"\n'
    'def build(w, tiny, seed, progress):\n'
    '  progress(f"tiny={tiny} seed={seed}")\n'
    '  return w + "/report.html", PASSED\n'
    'report.build = build\n'
    "sys.argv = ['report', sys.argv[1], '--tiny', '--seed=3']\n"
    "runpy.run_module('experiments.report', run_name='__main__')\n"
  )
  for verdict, said in (('pass', 'all pass'), ('fail', 'FAIL')):
    res = subprocess.run(
      [sys.executable, '-c', script, f'--workdir={tmp_path}', verdict],
      check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert 'tiny' in lines[0] and str(tmp_path / 'report.html') in lines[0]  # the header
    assert lines[1] == 'tiny=True seed=3'
    assert re.fullmatch(
      rf'{re.escape(str(tmp_path))}/report.html written in \d+ s; gradient checks {said}', lines[2]
    )
