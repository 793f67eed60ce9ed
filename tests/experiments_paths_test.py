"""The paths the experiments take from flags, checked in-process before any work (experiments/common.py)."""

import os

import pytest

from experiments import common


def test_json_out_that_cannot_be_written_is_refused_before_any_work(tmp_path):
  with pytest.raises(SystemExit, match=r'^Error: --json_out=.* is a folder; give the name of a file'):
    common.prepare_output_file('json_out', str(tmp_path))
  (tmp_path / 'file').write_text('x')
  with pytest.raises(SystemExit, match=r'^Error: --json_out=.*file/r\.json cannot be written: .*folder'):
    common.prepare_output_file('json_out', str(tmp_path / 'file' / 'r.json'))  # a file where a folder must be
  path = common.prepare_output_file('json_out', str(tmp_path / 'new' / 'r.json'))
  assert os.path.isdir(tmp_path / 'new') and not os.path.exists(path)  # the folder made, no empty file left


def test_json_out_replaces_an_earlier_report_and_never_a_file_of_the_users(tmp_path):
  # The user's own file was replaced by the reports without a word.
  mine = tmp_path / 'mine.txt'
  mine.write_text('precious')
  ours = lambda p: open(p).read().startswith('{"passed"')
  with pytest.raises(SystemExit, match=r'^Error: --json_out=.*mine\.txt is a file this command did not'):
    common.prepare_output_file('json_out', str(mine), ours)
  assert mine.read_text() == 'precious'
  earlier = tmp_path / 'r.json'
  earlier.write_text('{"passed": true, "reports": []}')
  assert common.prepare_output_file('json_out', str(earlier), ours) == str(earlier)


def test_json_out_that_is_a_link_is_refused_as_a_link(tmp_path):
  # A dangling link was 'a file this command did not write', and a link to a report was accepted.
  dangling = tmp_path / 'gone.json'
  dangling.symlink_to(tmp_path / 'nowhere.json')
  with pytest.raises(
    SystemExit, match=r'^Error: --json_out=.*gone\.json is a link \(to .*nowhere\.json\); choose'
  ):
    common.prepare_output_file('json_out', str(dangling), lambda p: True)
  report = tmp_path / 'r.json'
  report.write_text('{"passed": true, "reports": []}')
  (tmp_path / 'to_report.json').symlink_to(report)
  with pytest.raises(SystemExit, match=r'to_report\.json is a link'):
    common.prepare_output_file('json_out', str(tmp_path / 'to_report.json'), lambda p: True)
  assert report.read_text() == '{"passed": true, "reports": []}'


def test_json_out_under_home_is_expanded(tmp_path, monkeypatch):
  monkeypatch.setenv('HOME', str(tmp_path))
  assert common.prepare_output_file('json_out', '~/r.json') == str(tmp_path / 'r.json')
  assert common.expand_path('~/d') == str(tmp_path / 'd') and common.expand_path(None) is None
