"""hard_cases and report: an output that cannot be written is one line (`Error: ...`, exit 1)."""

import os
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
    [sys.executable, '-m', 'experiments.hard_cases', '--epochs=1', '--num_examples=20',
     f'--workdir={tmp_path}'],
    check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  assert res.returncode == 1 and 'Traceback' not in res.stderr, res.stderr[-2000:]
  assert res.stderr.strip().splitlines()[-1] == (
    f'Error: {tmp_path}/hard_cases.json is a folder, where a file is to be written; move it or choose '
    'another folder.'
  )


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
