"""report: the whole tiny report built by one library call, every section and picture in it."""

import base64
import contextlib
import io
import os
import pathlib
import re
import signal

import jax
import numpy as np
import pytest

from linear_jax.runs import report
from linear_jax.training import preemption

SECTIONS = (
  '1. Training a softmax classifier on digits',
  '2. Hand-derived gradients checked three ways',
  '3. A learning-rate × reg sweep',
  '4. Learning is search',
  '5. Hard cases for a linear classifier',
  '6. Gradient descent made visible',
  '7. Input representation',
  '8. How far from the optimum',
)


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('report')
  lines, printed = [], io.StringIO()
  with contextlib.redirect_stdout(printed):
    out = report.build(str(workdir), tiny=True, seed=0, progress=lines.append)
  return workdir, out, lines, printed.getvalue()


def test_build_writes_every_section_in_order_and_the_gradient_checks_pass(built):
  workdir, out, _, _ = built
  assert out.path == str(workdir / 'report.html') and out.gradient_checks_passed
  page = pathlib.Path(out.path).read_text()
  assert f'<title>{report.TITLE}</title>' in page
  titles = re.findall(r'<h2>([^<]*)</h2>', page)
  assert len(titles) == len(SECTIONS)
  for title, start in zip(titles, SECTIONS, strict=True):
    assert title.startswith(start), title
  assert page.count('<td>FAIL</td>') == 0 and page.count('<td>OK</td>') > 0
  # The text says what this build ran: the tiny one trains 5 epochs (it said 30), and L-BFGS's gap is the
  # table's (it said "f* to float64 precision" beside a gap of 3.7e-03).
  assert '5 epochs of mini-batch SGD reach test accuracy' in page
  lbfgs = re.search(r'<tr><td>L-BFGS</td><td>([^<]+)</td><td>[^<]+</td><td>([^<]+)</td></tr>', page)
  assert f'L-BFGS ends {lbfgs[1]} above f* after {lbfgs[2]} passes.' in page


def test_every_picture_the_page_names_is_the_png_beside_it(built):
  workdir, out, _, _ = built
  page = pathlib.Path(out.path).read_text()
  images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="[^"]*" data-file="([^"]+)">', page)
  assert len(images) == page.count('<figcaption>') >= 12
  for data, name in images:
    assert base64.b64decode(data) == (workdir / name).read_bytes(), name
    assert base64.b64decode(data)[:8] == b'\x89PNG\r\n\x1a\n', name
  assert {name for _, name in images} == {p.name for p in workdir.glob('*.png')}


def test_build_refuses_to_run_without_float64(tmp_path):
  jax.config.update('jax_enable_x64', False)
  try:
    with pytest.raises(ValueError, match='jax_enable_x64'):
      report.build(str(tmp_path), tiny=True)
  finally:
    jax.config.update('jax_enable_x64', True)  # as conftest.py sets it for every test
  assert not list(tmp_path.iterdir())


def test_build_says_each_section_as_it_starts_and_prints_nothing_per_epoch(built):
  _, _, lines, printed = built
  assert printed == ''  # no training run of the report is given a per-epoch printer
  assert len(lines) == len(SECTIONS) == len(report.SECTIONS)
  for i, (line, (what, _)) in enumerate(zip(lines, report.SECTIONS, strict=True), 1):
    assert re.fullmatch(rf'\[{i}/{len(SECTIONS)}\] {re.escape(what)}  \(\d+ s so far\)', line), line


def test_header_says_what_the_report_trains_where_it_writes_and_how_long_it_takes(tmp_path):
  for tiny in (False, True):
    text = report.header(str(tmp_path), tiny)
    assert '\n' not in text and f'{len(SECTIONS)} sections' in text and 'digits' in text
    assert str(tmp_path / 'report.html') in text
    assert re.search(r'About \d+ (s|minutes) on 2 free CPU cores', text), text
    assert ('tiny' in text) == tiny


def test_a_linear_panel_without_a_line_in_view_says_so():
  x0, x1 = np.meshgrid(np.linspace(-3, 3, 20), np.linspace(-3, 3, 20))
  crossing = report.linear_caption('parity', x0 + 0.5 * x1)
  assert crossing[0] == 'parity: the data and the best line a linear classifier finds.'
  for scores, cls in ((x0**2 + 1.0, '1'), (-(x1**2) - 0.1, '0')):  # one sign over the whole picture
    caption = report.linear_caption('ring', scores)[0]
    assert 'best line a linear' not in caption and f'in one class ({cls})' in caption and 'outside' in caption


def test_a_stop_signal_writes_no_report_of_runs_cut_short(tmp_path, monkeypatch):
  """Ctrl-C while section 7 trained: fit caught it and returned the model it had, and report.html was
  written with that accuracy (7% where the run gives 26%), exit 0. Now the section's fits stop, and the
  build raises at its end, before any page is written."""
  trained = []

  def section(rep, tiny, seed):
    del rep, tiny
    ds = report.data.prepare(report.data.load('digits'), 'digits', seed=seed)
    os.kill(os.getpid(), signal.SIGINT)  # while the fit below would run, as a user's Ctrl-C
    trained.append(report.train.fit(report.config.TrainConfig(epochs=50), ds))

  monkeypatch.setattr(report, 'SECTIONS', (('training', section), ('never reached', None)))
  try:
    with pytest.raises(report.Stopped, match='SIGINT during section 1 of 2: no report written'):
      report.build(str(tmp_path))
  finally:
    preemption.reset()
  assert trained[0].interrupted and len(trained[0].history) < 50
  assert not (tmp_path / 'report.html').exists()


def test_an_output_that_is_a_folder_is_refused_before_any_section_runs(tmp_path, monkeypatch):
  (tmp_path / 'report.html').mkdir()
  monkeypatch.setattr(report, 'SECTIONS', (('must not run', lambda *a: pytest.fail('a section ran')),))
  with pytest.raises(ValueError, match=r'report.html is a folder, where the report writes report.html'):
    report.build(str(tmp_path))


def test_every_file_the_report_writes_is_one_it_checks_first(built):
  workdir = built[0]
  written = sorted(p.name for p in workdir.iterdir() if p.suffix in ('.html', '.png'))
  assert written == sorted(report.outputs())


def test_a_second_stop_signal_stops_the_report_at_once(tmp_path, monkeypatch):
  """The first signal waits for the section to end (an L-BFGS solve does not watch for it); a second
  said 'already stopping, the checkpoint is on its way', where the report writes none, and could not
  force the stop. It raises at once now."""
  after = []

  def section(rep, tiny, seed):
    del rep, tiny, seed
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGINT)
    after.append('ran on')  # the second signal's KeyboardInterrupt comes before this line

  monkeypatch.setattr(report, 'SECTIONS', (('solving', section),))
  try:
    with pytest.raises(KeyboardInterrupt):
      report.build(str(tmp_path))
  finally:
    preemption.reset()
  assert not after and not (tmp_path / 'report.html').exists()
