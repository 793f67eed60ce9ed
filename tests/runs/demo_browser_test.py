"""The demo page in a real browser (headless Chromium through Selenium): it loads, steps lower the loss,
a dragged line changes the table, the loss switches, a hard case loads and its feature map separates it,
and the search methods race. Needs Debian's chromium and chromium-driver (.ci/run installs them)."""

import os
import shutil
import socket
import threading
import time

import pytest

from linear_jax.runs import demo

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
DRIVER = shutil.which('chromedriver') or (
  '/usr/bin/chromedriver' if os.path.exists('/usr/bin/chromedriver') else None
)
MISSING = (
  "no chromium/chromedriver: the browser tests of the demo page need Debian's chromium and chromium-driver"
)


@pytest.fixture(scope='module')
def browser():
  """`(driver, server)`: one headless Chromium and one server for the module."""
  try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
  except ImportError:
    CHROMIUM_OK = False
  else:
    CHROMIUM_OK = bool(CHROMIUM and DRIVER)
  if not CHROMIUM_OK:
    if os.environ.get('CI'):
      pytest.fail(MISSING + ' (and selenium); in CI they must be there.')
    pytest.skip(MISSING)
  server = demo.serve('127.0.0.1', 0)
  server.accepted = _keep_accepted(server)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for arg in (
    '--headless=new',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--window-size=1900,1400',
  ):
    options.add_argument(arg)
  driver = webdriver.Chrome(service=Service(DRIVER), options=options)
  yield driver, server
  driver.quit()
  server.shutdown()
  server.server_close()


def _keep_accepted(server):
  """The sockets `server` accepts from now on, in a list that grows as it accepts them."""
  accepted = []
  accept = server.get_request

  def get_request():
    conn, address = accept()
    accepted.append(conn)
    return conn, address

  server.get_request = get_request
  return accepted


@pytest.fixture
def page(browser):
  """The page freshly loaded for each test, so no test starts from another's points, model or loss.

  Afterwards the connections Chromium keeps alive are closed from the server's side, so their handler
  threads end now rather than after the server's idle timeout; the next page opens new ones.
  """
  driver, server = browser
  driver.get(server.url)
  _wait(driver, 'return !!(S.result && S.model && !S.inflight && !S.pending)')
  yield driver
  while server.accepted:
    conn = server.accepted.pop()
    try:
      conn.shutdown(socket.SHUT_RDWR)
    except OSError:
      pass  # already closed by its handler


def _wait(driver, script, timeout=90):
  """Waits until `script` returns something true; returns it."""
  end = time.time() + timeout
  while time.time() < end:
    value = driver.execute_script(script)
    if value:
      return value
    time.sleep(0.05)
  status = driver.execute_script("return document.getElementById('status').textContent")
  raise AssertionError(f'timed out waiting for {script!r}; status: {status}')


def _idle(driver):
  _wait(driver, 'return !S.inflight && !S.pending')


def _total(driver):
  _idle(driver)
  return float(driver.find_element('id', 'total').text)


def test_page_shows_the_three_viewpoints(page):
  assert page.title.startswith('linear_jax')
  rows = page.find_elements('css selector', '#example-table tbody tr')
  assert len(rows) == page.execute_script('return S.points.length') == 90
  assert page.find_element('id', 'total').text not in ('', '—')
  assert 'hand-derived vs jax.grad' in page.find_element('id', 'gradcheck-summary').text
  assert len(page.find_elements('css selector', '#params-table input')) == 9  # W 3×2 and b


def test_step_lowers_the_loss(page):
  before = _total(page)
  for _ in range(3):
    page.find_element('id', 'step').click()
    _idle(page)
  after = _total(page)
  assert after < before
  assert page.execute_script('return S.curve.length') == 3
  assert 'After step 3' in page.find_element('id', 'gradcheck-summary').text


def test_dragging_a_line_changes_the_table(page):
  from selenium.webdriver.common.action_chains import ActionChains

  _idle(page)
  first = page.find_element('css selector', '#example-table tbody tr').text
  b0 = page.execute_script('return S.model.b[0]')
  # The middle of class 0's line, in CSS pixels from the canvas's centre.
  x, y = page.execute_script(
    """const f = geoFrame(), ln = S.result.lines[0], c = f.c, r = c.getBoundingClientRect();
       const X = f.px((ln.p1[0] + ln.p2[0]) / 2 + 0.0), Y = f.py((ln.p1[1] + ln.p2[1]) / 2);
       return [X * r.width / c.width - r.width / 2, Y * r.height / c.height - r.height / 2];"""
  )
  geo = page.find_element('id', 'geo')
  ActionChains(page).move_to_element_with_offset(geo, int(x), int(y)).click_and_hold().move_by_offset(
    30, 25
  ).move_by_offset(10, 10).release().perform()
  _wait(page, 'return window.demoTimings.some((t) => t.route === "drag")')
  _idle(page)
  assert page.execute_script('return S.model.b[0]') != pytest.approx(b0)
  assert page.find_element('css selector', '#example-table tbody tr').text != first


def test_a_point_dragged_past_the_edge_stays_in_view_and_can_be_grabbed_again(page):
  from selenium.webdriver.common.action_chains import ActionChains

  _idle(page)
  # A point that a press grabs (no line's handle nor other point over it), in CSS pixels from the
  # canvas's centre, and how far up the pointer goes: past the canvas's top edge, inside the window.
  i, x, y, up = page.execute_script(
    """const f = geoFrame(), c = f.c, r = c.getBoundingClientRect();
       const grabs = (p, k) => { const h = hit(f.px(p[0]), f.py(p[1])); return h && h.i === k; };
       const i = S.points.findIndex(grabs);
       const X = f.px(S.points[i][0]) * r.width / c.width, Y = f.py(S.points[i][1]) * r.height / c.height;
       return [i, X - r.width / 2, Y - r.height / 2, Y + Math.min(r.top, 30) - 2];"""
  )
  assert i >= 0 and up > 0
  geo = page.find_element('id', 'geo')
  ActionChains(page).move_to_element_with_offset(geo, int(x), int(y)).click_and_hold().move_by_offset(
    0, -int(up) // 2
  ).move_by_offset(0, -int(up) + int(up) // 2).release().perform()
  _idle(page)
  inside, grabbed = page.execute_script(
    f"""const f = geoFrame(), p = S.points[{i}], v = S.view, h = hit(f.px(p[0]), f.py(p[1]));
       const inside = v[0] <= p[0] && p[0] <= v[1] && v[2] <= p[1] && p[1] <= v[3];
       return [inside, !!h && h.kind === 'point' && h.i === {i}];"""
  )
  assert inside and grabbed
  assert page.execute_script(f'return S.points[{i}][1]') == pytest.approx(
    page.execute_script('return S.view[3]'), abs=1e-3
  )  # at the top edge, where the pointer left


def test_the_points_move_by_keyboard(page):
  # The canvas was not reachable by keyboard: a point could be moved, added or removed by mouse alone.
  from selenium.webdriver.common.keys import Keys

  _idle(page)
  page.find_element('id', 'reg').click()
  page.switch_to.active_element.send_keys(Keys.TAB)  # the next control in the page's order: the picture
  assert page.switch_to.active_element.get_attribute('id') == 'geo'
  geo = page.find_element('id', 'geo')
  n, view = page.execute_script('return [S.points.length, S.view]')
  first = page.execute_script('return S.points[0].slice()')
  geo.send_keys(']')  # the first point
  assert page.execute_script('return S.focus') == 0
  total = _total(page)
  geo.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.SHIFT + Keys.ARROW_UP)
  _idle(page)
  moved = page.execute_script('return S.points[0]')
  assert moved[0] == pytest.approx(min(first[0] + 2 * 0.02 * (view[1] - view[0]), view[1]), abs=1e-4)
  assert moved[1] == pytest.approx(min(first[1] + 5 * 0.02 * (view[3] - view[2]), view[3]), abs=1e-4)
  assert _total(page) != total  # the server scored the moved point
  assert page.execute_script('return window.scrollY') == 0  # the arrows moved the point, not the page
  geo.send_keys('[')  # wraps to the last point
  assert page.execute_script('return S.focus') == n - 1
  geo.send_keys(Keys.DELETE)
  _idle(page)
  assert page.execute_script('return [S.points.length, S.labels.length, S.focus]') == [n - 1, n - 1, n - 2]
  page.execute_script("document.getElementById('add-class').value = '2'")
  geo.send_keys(Keys.ENTER)
  _idle(page)
  added = page.execute_script(
    'return [S.points.length, S.points[S.points.length - 1], S.labels.at(-1), S.focus]'
  )
  centre = [(view[0] + view[1]) / 2, (view[2] + view[3]) / 2]
  assert added[0] == n and added[1] == pytest.approx(centre, abs=1e-4) and added[2:] == [2, n - 1]
  rows = page.find_elements('css selector', '#example-table tbody tr')
  assert len(rows) == n  # the table the server answered holds the added point


def test_a_refused_input_greys_the_figures_until_one_is_accepted(page):
  stale = "return document.querySelector('main').classList.contains('stale')"
  opacity = "return +getComputedStyle(document.getElementById('total').closest('table')).opacity"
  _idle(page)
  assert not page.execute_script(stale) and page.execute_script(opacity) == 1
  box = page.find_element('id', 'reg')
  box.clear()
  box.send_keys('-1')  # λ < 0: the server refuses it
  _wait(page, "return document.getElementById('status').classList.contains('error')")
  _idle(page)
  assert page.execute_script(stale) and page.execute_script(opacity) < 1
  assert 'greyed' in page.find_element('id', 'status').text
  box.clear()
  box.send_keys('0.01')
  _wait(page, 'return S.reg === 0.01 && !S.inflight && !S.pending')
  assert not page.execute_script(stale) and page.execute_script(opacity) == 1


def test_nudging_an_entry_of_w_recomputes(page):
  before = _total(page)
  box = page.find_element('css selector', '#params-table input[data-r="1"][data-k="0"]')
  box.clear()
  box.send_keys('3.5')
  _wait(page, 'return S.model.W[1][0] === 3.5 && !S.inflight && !S.pending')
  assert _total(page) != before


def test_switching_the_loss(page):
  from selenium.webdriver.support.ui import Select

  svm = _total(page)
  Select(page.find_element('id', 'loss-select')).select_by_value('softmax')
  _wait(page, "return S.loss === 'softmax' && S.result && !S.inflight && !S.pending")
  assert _total(page) != svm
  assert page.find_elements('css selector', '#hparams input') == []  # softmax has no Δ
  Select(page.find_element('id', 'loss-select')).select_by_value('svm')
  _wait(page, "return document.querySelectorAll('#hparams input').length === 1")


def test_hard_case_and_its_feature_map(page):
  from selenium.webdriver.support.ui import Select

  Select(page.find_element('id', 'dataset-select')).select_by_value('parity')
  _wait(page, "return S.datasetName === 'parity' && S.result && !S.inflight && !S.pending")
  assert page.find_element('id', 'features').is_enabled()
  page.find_element('id', 'features').click()
  _wait(page, "return S.features === 'parity' && S.model.W[0].length === 1 && !S.inflight && !S.pending")
  per_frame = page.find_element('id', 'per-frame')
  per_frame.clear()
  per_frame.send_keys('50')
  page.find_element('id', 'run').click()
  _wait(page, 'return S.opt.t >= 150')
  page.find_element('id', 'run').click()
  _idle(page)
  assert float(page.find_element('id', 'accuracy').text.split()[0]) > 95
  assert page.execute_script('return S.result.lines') is None  # a curve in the plane: regions only


def test_the_search_methods_race(page):
  budget = page.find_element('id', 'budget')
  budget.clear()
  budget.send_keys('100')
  page.find_element('id', 'search-run').click()
  _wait(page, "return document.querySelectorAll('#search-table tbody tr').length === 4", timeout=300)
  text = page.find_element('id', 'search-table').text
  for method in ('random search', 'random local search', 'genetic algorithm', 'gradient descent'):
    assert method in text
  assert page.find_element('id', 'status').get_attribute('class') != 'error'
  # Another λ makes the race another problem's: its table greys and its weights are refused (they were
  # taken, and the table kept the losses of the objective before).
  stale = "return document.getElementById('search-table').classList.contains('stale')"
  assert not page.execute_script(stale)
  reg = page.find_element('id', 'reg')
  reg.clear()
  reg.send_keys('5')
  _wait(page, 'return S.reg === 5 && !S.inflight && !S.pending')
  assert page.execute_script(stale)
  before = page.execute_script('return JSON.stringify(S.model)')
  page.find_element('css selector', '#search-table button[data-i="3"]').click()
  assert 'another objective: race again' in page.find_element('id', 'status').text
  assert page.execute_script('return JSON.stringify(S.model)') == before


def _slow_steps(page, ms=1500, route='step'):
  """Holds every answer of /api/`route` back `ms` milliseconds, so the test can act while one is in flight."""
  page.execute_script(
    'window._fetch = window._fetch || window.fetch; window.fetch = async (u, o) => {'
    f" const r = await window._fetch(u, o); if (String(u).endsWith('/{route}'))"
    f' await new Promise((z) => setTimeout(z, {ms})); return r; }};'
  )


def test_two_quick_steps_are_two_steps_and_an_edit_during_one_drops_it(page):
  # A second Step pressed while one ran sent the weights and optimizer state from before the first: two
  # presses made t = 1 and two equal points on the curve. An edit made meanwhile was applied to the
  # weights before the step while t and the curve counted it.
  _slow_steps(page)
  page.execute_script("$('step').click(); $('step').click();")
  _wait(page, 'return S.opt.t === 2 && !S.inflight && !S.pending')
  curve = page.execute_script('return S.curve')
  assert len(curve) == 2 and curve[1] < curve[0]
  page.find_element('id', 'step').click()
  _wait(page, 'return S.inflight')
  box = page.find_element('css selector', '#params-table input[data-r="0"][data-k="0"]')
  box.clear()
  box.send_keys('2.5')
  _idle(page)
  assert page.execute_script('return [S.model.W[0][0], S.opt.t, S.curve.length]') == [2.5, 2, 2]
  # A slice asked for while a step runs is no edit: the step stays, and the slice's path holds it.
  page.find_element('id', 'step').click()
  _wait(page, 'return S.inflight')
  page.find_element('id', 'surface-draw').click()
  _wait(page, 'return S.opt.t === 3 && S.surface && !S.inflight && !S.pending')
  assert page.execute_script('return S.surface.path.length === S.path.length - 1')
  page.execute_script('window.fetch = window._fetch;')


def test_a_step_pressed_before_the_method_changes_is_a_step_of_the_new_method(page):
  from selenium.webdriver.support.ui import Select

  # Pressed while another request ran, it was sent with the new method's fresh state and then dropped as
  # a step of the old one: the press did nothing.
  _slow_steps(page, route='evaluate')
  page.execute_script("S.reg = 0.002; evaluate(); $('step').click();")
  Select(page.find_element('id', 'opt-method')).select_by_value('adam')
  _wait(page, 'return S.opt.t === 1 && !S.inflight && !S.pending')
  assert page.execute_script('return S.curve.length') == 1
  page.execute_script('window.fetch = window._fetch;')


def test_a_binary_loss_is_refused_where_it_is_chosen_for_three_classes(page):
  from selenium.webdriver.support.ui import Select

  # It was taken, and every request after it refused until the loss was changed back.
  Select(page.find_element('id', 'loss-select')).select_by_value('hinge')
  assert (
    'hinge is a binary loss: it needs 2 classes, and these data have 3'
    in page.find_element('id', 'status').text
  )
  assert page.execute_script("return [S.loss, $('loss-select').value]") == ['svm', 'svm']
  page.find_element('id', 'step').click()
  _wait(page, 'return S.opt.t === 1 && !S.inflight && !S.pending')
  assert page.find_element('id', 'status').get_attribute('class') != 'error'


def test_a_new_schedule_shows_its_restart_at_once(page):
  from selenium.webdriver.support.ui import Select

  for _ in range(2):
    page.find_element('id', 'step').click()
    _idle(page)
  assert page.find_element('id', 'opt-info').text.startswith('t = 2')
  Select(page.find_element('id', 'schedule')).select_by_value('exponential')
  assert page.find_element('id', 'opt-info').text.startswith('t = 0')  # was t = 2 until the next step


def test_the_descent_path_keeps_its_start_and_end_within_its_bound(page):
  # A CIFAR-shaped W is 30,720 numbers: the path of a long Run grew to hundreds of MB, and its surface
  # requests past the server's body limit.
  kept = page.execute_script(
    """const w = (v) => ({W: Array.from({length: 10}, () => Array(3072).fill(v)), b: Array(10).fill(v)});
       S.path = Array.from({length: 40}, (_, i) => w(i));
       keepPathBounded();
       return S.path.map((m) => m.b[0]);"""
  )
  assert kept[0] == 0 and kept[-1] == 39 and 1 < len(kept) <= max(3, 60_000 // (10 * 3073))


def test_a_step_answered_after_the_model_was_reset_is_dropped(page):
  # A step answer that arrived after Reset W (or a loss, feature-map or dataset change) put the old
  # optimizer state, curve and path back: t showed 1 for a model never stepped, and the next Step failed
  # with "optimizer.state[3] must have shape ...".
  page.execute_script(
    'window._fetch = window.fetch; window.fetch = async (u, o) => { const r = await window._fetch(u, o);'
    " if (String(u).includes('step')) await new Promise((z) => setTimeout(z, 1500)); return r; };"
  )
  page.find_element('id', 'step').click()
  _wait(page, 'return S.inflight')
  page.find_element('id', 'reset').click()
  _idle(page)
  assert page.execute_script('return [S.opt.t, S.opt.state, S.curve.length]') == [0, None, 0]
  assert page.find_element('id', 'opt-info').text.startswith('t = 0')
  page.execute_script('window.fetch = window._fetch;')
  page.find_element('id', 'step').click()
  _idle(page)
  assert page.execute_script('return S.opt.t') == 1
  assert page.find_element('id', 'status').get_attribute('class') != 'error'


def test_the_loss_curve_of_a_long_run_is_bounded_and_still_drawn(page):
  # A curve of ~125,000 steps overflowed the call stack in Math.min(...ys) and the page stopped.
  page.execute_script('S.curve = Array.from({length: 300000}, (_, i) => 1 / (i + 1));')
  page.find_element('id', 'step').click()
  _idle(page)
  assert page.find_element('id', 'status').get_attribute('class') != 'error'
  assert page.execute_script('return S.curve.length') <= page.execute_script('return CURVE_MAX') < 300000
  assert page.execute_script('return S.curveStart + S.curve.length') == 300001  # the steps keep their numbers


def test_an_edit_made_while_a_new_model_is_asked_for_applies_to_the_new_model(page):
  from selenium.webdriver.support.ui import Select

  # A binary loss asks /api/init for a model of one output. λ typed before its answer was an edit made on
  # the two-output model, and it superseded the answer: every request after it was refused ('model.W must
  # have shape [1, 2]') until Reset W.
  Select(page.find_element('id', 'dataset-select')).select_by_value('two_clouds')
  _wait(page, "return S.datasetName === 'two_clouds' && S.result && !S.inflight && !S.pending")
  _slow_steps(page, route='init')
  Select(page.find_element('id', 'loss-select')).select_by_value('logistic')
  _wait(page, 'return S.inflight')
  reg = page.find_element('id', 'reg')
  reg.clear()
  reg.send_keys('0.01')
  _wait(page, "return S.loss === 'logistic' && S.reg === 0.01 && !S.inflight && !S.pending")
  assert page.execute_script('return [S.model.W.length, S.result.model.W.length]') == [1, 1]
  assert page.find_element('id', 'status').get_attribute('class') != 'error'
  page.execute_script('window.fetch = window._fetch;')
