"""report: the whole tiny report built by one library call, every section and picture in it."""

import base64
import pathlib
import re

import jax
import pytest

from linear_jax.runs import report

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
  return workdir, report.build(str(workdir), tiny=True, seed=0)


def test_build_writes_every_section_in_order_and_the_gradient_checks_pass(built):
  workdir, out = built
  assert out.path == str(workdir / 'report.html') and out.gradient_checks_passed
  page = pathlib.Path(out.path).read_text()
  assert f'<title>{report.TITLE}</title>' in page
  titles = re.findall(r'<h2>([^<]*)</h2>', page)
  assert len(titles) == len(SECTIONS)
  for title, start in zip(titles, SECTIONS, strict=True):
    assert title.startswith(start), title
  assert page.count('<td>FAIL</td>') == 0 and page.count('<td>OK</td>') > 0


def test_every_picture_the_page_names_is_the_png_beside_it(built):
  workdir, out = built
  page = pathlib.Path(out.path).read_text()
  images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="[^"]*" data-file="([^"]+)">', page)
  assert len(images) == page.count('<figcaption>') > 0
  for data, name in images:
    assert base64.b64decode(data) == (workdir / name).read_bytes(), name
  assert {name for _, name in images} == {p.name for p in workdir.glob('*.png')}


def test_build_refuses_to_run_without_float64(tmp_path):
  jax.config.update('jax_enable_x64', False)
  try:
    with pytest.raises(ValueError, match='jax_enable_x64'):
      report.build(str(tmp_path), tiny=True)
  finally:
    jax.config.update('jax_enable_x64', True)  # as conftest.py sets it for every test
  assert not list(tmp_path.iterdir())
