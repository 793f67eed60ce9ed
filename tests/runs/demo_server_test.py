"""The demo's server: its page and assets, nothing else; a 4xx with a message for every bad request, and
it goes on serving; two tabs share nothing."""

import http.client
import json
import logging
import socket
import threading
import types

import pytest

from linear_jax.runs import demo
from linear_jax.runs import demo_api


@pytest.fixture(scope='module')
def server():
  srv = demo.serve('127.0.0.1', 0, warm=False)
  thread = threading.Thread(target=srv.serve_forever, daemon=True)
  thread.start()
  yield srv
  srv.shutdown()
  srv.server_close()
  thread.join(10)


JSON = {'Content-Type': 'application/json'}


def _ask(server, method, path, body=None, headers=None):
  """`(status, decoded body)` of one request on a fresh connection; raw paths are sent as written."""
  host, port = server.server_address[:2]
  conn = http.client.HTTPConnection(host, port, timeout=60)
  try:
    conn.putrequest(method, path, skip_accept_encoding=True, skip_host='Host' in (headers or {}))
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    for k, v in (headers or {}).items():
      conn.putheader(k, v)
    if data is not None and 'Content-Length' not in (headers or {}):
      conn.putheader('Content-Length', str(len(data)))
    if method == 'POST' and 'Content-Type' not in (headers or {}):
      conn.putheader('Content-Type', JSON['Content-Type'])  # as the page sends
    conn.endheaders()
    if data is not None:
      conn.send(data)
    r = conn.getresponse()
    raw = r.read()
    kind = r.getheader('Content-Type', '')
    return r.status, (json.loads(raw) if kind.startswith('application/json') else raw)
  finally:
    conn.close()


def _alive(server):
  status, page = _ask(server, 'GET', '/')
  assert status == 200 and b'<canvas id="geo"' in page


def test_serves_its_page_assets_and_config(server):
  assert server.url.startswith('http://127.0.0.1:')
  _alive(server)
  for path, words in (('/demo.js', b'/api/'), ('/demo.css', b'body'), ('/index.html?x=1', b'<html')):
    status, text = _ask(server, 'GET', path)
    assert status == 200 and words in text
  status, cfg = _ask(server, 'GET', '/api/config')
  assert status == 200 and 'svm' in [x['name'] for x in cfg['losses']] and cfg['limits']['points'] == 500


@pytest.mark.parametrize(
  'path',
  [
    '/../pyproject.toml',
    '/%2e%2e/pyproject.toml',
    '/%2e%2e%2fpyproject.toml',
    '/demo_page/../demo.py',
    '//etc/passwd',
    '/demo.js/../../demo.py',
    '/linear_jax/runs/demo.py',
    '/README.md',
  ],
)
def test_no_path_reaches_another_file(server, path):
  status, body = _ask(server, 'GET', path)
  assert status == 404 and 'error' in body
  _alive(server)


@pytest.mark.parametrize(
  ('method', 'path', 'body', 'headers', 'status'),
  [
    ('POST', '/api/evaluate', b'{not json', None, 400),
    ('POST', '/api/evaluate', b'\xff\xfe', None, 400),
    ('POST', '/api/evaluate', b'[1, 2]', None, 400),
    ('POST', '/api/evaluate', b'{"loss": "nope"}', None, 400),
    ('POST', '/api/evaluate', b'[' * 100000 + b']' * 100000, None, 400),
    ('POST', '/api/evaluate', b'{"reg": ' + b'9' * 5000 + b'}', None, 400),  # past int's 4,300 digits
    ('POST', '/api/evaluate', b'{}', {'Content-Length': 'abc'}, 400),
    ('POST', '/api/evaluate', b'x', {'Content-Length': str(demo_api.MAX_BODY + 1)}, 413),
    ('POST', '/api/nothing', b'{}', None, 404),
    ('GET', '/api/evaluate', None, None, 405),
    ('POST', '/', b'{}', None, 405),
    ('PUT', '/api/evaluate', b'{}', None, 405),
    ('DELETE', '/', None, None, 405),
    # The base class's own refusals, which were HTML pages.
    ('TRACE', '/', None, None, 501),
    ('GET', '/' + 'a' * 70_000, None, None, 414),
    ('GET', '/', None, {'X-Big': 'a' * 70_000}, 431),
  ],
)
def test_bad_requests_get_a_4xx_and_the_server_goes_on(server, method, path, body, headers, status):
  got, answer = _ask(server, method, path, body, headers)
  assert got == status and isinstance(answer, dict) and answer['error']
  _alive(server)


def test_a_request_over_the_bounds_is_refused(server):
  state = {**demo_api.handle_dataset({'name': 'blobs', 'n': 20}), 'loss': 'svm'}
  status, out = _ask(server, 'POST', '/api/init', state)
  assert status == 200
  status, answer = _ask(server, 'POST', '/api/step', {**state, 'model': out['model'], 'steps': 10_000})
  assert status == 400 and 'steps' in answer['error']
  status, answer = _ask(server, 'POST', '/api/surface', {**state, 'model': out['model'], 'grid': 500})
  assert status == 400 and 'grid' in answer['error']
  _alive(server)


def test_two_tabs_do_not_share_state(server):
  """Each answer depends on its own request only: two "tabs" interleaved see their own models."""
  a = {**demo_api.handle_dataset({'name': 'blobs', 'n': 20}), 'loss': 'svm'}
  b = {**demo_api.handle_dataset({'name': 'two_clouds', 'n': 30}), 'loss': 'logistic'}
  a['model'] = _ask(server, 'POST', '/api/init', a)[1]['model']
  b['model'] = _ask(server, 'POST', '/api/init', {**b, 'seed': 3})[1]['model']
  alone = _ask(server, 'POST', '/api/evaluate', a)[1]
  _ask(server, 'POST', '/api/step', {**b, 'steps': 5})
  again = _ask(server, 'POST', '/api/evaluate', a)[1]
  assert again == alone and len(again['model']['W']) == 3
  results = {}

  def tab(name, state):
    results[name] = [_ask(server, 'POST', '/api/evaluate', state)[1]['total'] for _ in range(5)]

  threads = [threading.Thread(target=tab, args=(k, s)) for k, s in (('a', a), ('b', b))]
  for t in threads:
    t.start()
  for t in threads:
    t.join(120)
  assert len(set(results['a'])) == 1 and len(set(results['b'])) == 1 and results['a'][0] != results['b'][0]


def test_the_command_prints_its_address_and_stops_on_sigterm():
  import os
  import pathlib
  import re
  import signal
  import subprocess
  import sys
  import urllib.request

  root = pathlib.Path(__file__).resolve().parents[2]
  proc = subprocess.Popen(
    [sys.executable, '-m', 'experiments.demo', '--port=0', '--loss=softmax'],
    cwd=root,
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
    env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
  )
  try:
    line = proc.stdout.readline()
    match = re.fullmatch(r'serving the lecture at (http://127\.0\.0\.1:\d+/)\n', line)
    assert match, line
    with urllib.request.urlopen(match.group(1) + 'api/config', timeout=60) as r:
      assert json.load(r)['default_loss'] == 'softmax'
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert 'stopped' in proc.stdout.read()
  finally:
    if proc.poll() is None:
      proc.kill()


def test_a_users_loss_from_the_command_line_is_offered_and_used(tmp_path):
  path = tmp_path / 'my_losses.py'
  path.write_text(
    'import jax.numpy as jnp\nimport linear_jax as lj\n'
    'def sq(scores, labels):\n'
    '  return jnp.sum(jnp.square(scores), axis=-1) - jnp.take_along_axis(scores, labels[:, None], 1)[:, 0]\n'
    "SQ = lj.Loss(sq, 'class')\n"
  )
  srv = demo.serve('127.0.0.1', 0, loss=f'{path}:SQ', warm=False)
  try:
    cfg = demo_api.config(srv.default_loss)
    assert cfg['default_loss'] == f'{path}:SQ' and f'{path}:SQ' in [x['name'] for x in cfg['losses']]
    state = {**demo_api.handle_dataset({'name': 'blobs', 'n': 20}), 'loss': f'{path}:SQ'}
    out = demo_api.handle_init(state)
    assert out['gradcheck']['analytic'] is None  # no hand-derived score_grad: jax.grad and differences only
    assert out['gradcheck']['max_relative_error']['autodiff_vs_numerical'] < 1e-6
  finally:
    srv.server_close()


def test_an_answer_says_the_servers_share_and_is_not_held_by_nagle(server):
  host, port = server.server_address[:2]
  conn = http.client.HTTPConnection(host, port, timeout=60)
  try:
    for _ in range(2):  # one kept-alive connection, as the page's
      conn.request('POST', '/api/dataset', json.dumps({'name': 'blobs', 'n': 20}), JSON)
      r = conn.getresponse()
      assert r.status == 200 and len(json.loads(r.read())['points']) == 20
      name, dur = r.getheader('Server-Timing').split(';')
      assert name == 'compute' and 0 <= float(dur.removeprefix('dur=')) < 60_000
  finally:
    conn.close()
  assert demo.Handler.disable_nagle_algorithm  # the body goes out without waiting for an acknowledgement


def test_a_request_the_page_drops_before_its_answer_is_no_error(caplog):
  """A drag aborts the page's previous request: the answer has nowhere to go, and that is not a failure."""
  body = json.dumps({'name': 'blobs', 'n': 20}).encode()
  here, there = socket.socketpair()
  head = b'POST /api/dataset HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\n'
  here.sendall(head + b'Content-Length: %d\r\n\r\n' % len(body) + body)
  here.close()  # gone before the answer: writing it breaks the pipe
  srv = types.SimpleNamespace(default_loss='svm', server_address=('127.0.0.1', 8000))
  local = type('Local', (demo.Handler,), {'disable_nagle_algorithm': False})  # not TCP: no Nagle to turn off
  with caplog.at_level(logging.DEBUG):
    local(there, ('page', 0), srv)  # handles the one request, as the server's thread does
  there.close()
  assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
  assert any('closed the connection before its answer' in r.getMessage() for r in caplog.records)


def test_an_api_call_another_site_could_have_made_is_refused(server):
  """Any page the user visits could POST here: a text/plain body (no preflight), a foreign Origin, or a
  Host that DNS rebinding pointed at the loopback address. Each was answered, and computed on."""
  port = server.server_address[1]
  body = {'name': 'blobs', 'n': 20}
  cases = [
    ({'Content-Type': 'text/plain'}, 415, 'Content-Type: application/json'),
    ({'Origin': 'http://evil.example'}, 403, 'A page of http://evil.example may not call this server'),
    ({'Host': f'evil.example:{port}'}, 403, "Host 'evil.example:"),
    ({'Host': 'evil.example'}, 403, 'is not this server'),
  ]
  for headers, status, words in cases:
    got, answer = _ask(server, 'POST', '/api/dataset', body, {**JSON, **headers})
    assert got == status and words in answer['error'], (headers, got, answer)
  # The page at its own address by any of its names, or through a forwarded port (ssh -L 9000:..., docker
  # -p 9000:8000, port 80 where the browser sends none): each was refused for its port.
  hosts = [f'localhost:{port}', f'127.0.0.1:{port}', f'[::1]:{port}', 'localhost:9000', 'localhost']
  for host in [*hosts, f'{socket.gethostname()}:{port}']:
    origin = {'Host': host, 'Origin': f'http://{host}'}
    assert _ask(server, 'POST', '/api/dataset', body, {**JSON, **origin})[0] == 200, host


def test_a_step_of_adam_on_a_cifar_shaped_model_fits_in_a_request(server):
  """The page sends W, b and Adam's two moments of each back with the next step: 2.1 MB of JSON for a
  CIFAR-shaped model, which 2 MiB refused (413), and the page took no step again until Reset."""
  state = _ask(server, 'POST', '/api/dataset', {'name': 'cifar', 'n': 20})[1]
  state = {**state, 'loss': 'softmax', 'reg': 0.001}
  state['model'] = _ask(server, 'POST', '/api/init', state)[1]['model']
  adam = {'method': 'adam', 'learning_rate': 1e-3}
  first = _ask(server, 'POST', '/api/step', {**state, 'optimizer': adam, 'steps': 1})[1]
  again = {**adam, 'state': first['optimizer']['state'], 't': first['optimizer']['t']}
  request = {**state, 'model': first['model'], 'optimizer': again, 'steps': 1}
  assert len(json.dumps(request)) > 2 << 20  # what 2 MiB refused
  status, answer = _ask(server, 'POST', '/api/step', request)
  assert status == 200 and answer['optimizer']['t'] == 2, answer


def _raw(server, head, body=b'', wait=10.0):
  """The server's answer to bytes sent as they are, on a fresh connection (the body may fall short)."""
  with socket.create_connection(server.server_address[:2], timeout=wait) as s:
    port = server.server_address[1]
    s.sendall(head.replace(b'HOST', b'127.0.0.1:%d' % port) + body)
    answer = b''
    while chunk := s.recv(65536):  # until the server closes the connection, as it does after a refusal
      answer += chunk
    return answer.decode()


def test_a_body_that_falls_short_or_a_content_length_of_another_form_is_answered_400(server):
  # A short body got no answer (the connection closed after 2 s); '1_0' and '+10' were read as 10 by
  # Python's int(); of two Content-Lengths the first won.
  head = b'POST /api/dataset HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n'
  short = _raw(server, head + b'Content-Length: 100\r\n\r\n', b'{}')
  assert short.startswith('HTTP/1.1 400') and 'The body ended before its Content-Length of 100' in short
  for length in (
    b'Content-Length: 1_0\r\n',
    b'Content-Length: +10\r\n',
    b'Content-Length: 2\r\nContent-Length: 9\r\n',
    b'Content-Length: \xb2\r\n',  # '²'.isdigit(), and int() refused it: a traceback, and no answer
  ):
    answer = _raw(server, head + length + b'\r\n', b'{}')
    assert answer.startswith('HTTP/1.1 400') and 'Bad Content-Length' in answer, (length, answer)


def test_an_address_that_serves_other_machines_is_told_from_the_loopback():
  # `demo --host=0.0.0.0` (or an empty --host) served every network without a word; it now warns.
  assert demo.loopback('127.0.0.1') and demo.loopback('::1') and demo.loopback('127.0.0.2')
  assert not demo.loopback('0.0.0.0') and not demo.loopback('192.168.1.5') and not demo.loopback('::')


def test_a_port_in_use_is_refused_before_the_warm_up(server, monkeypatch):
  # `demo --port=<in use>` said 'Address already in use' after 5 s of compiling the first interactions.
  monkeypatch.setattr(demo, 'warm_up', lambda loss: pytest.fail('compiled before binding'))
  with pytest.raises(OSError):
    demo.serve('127.0.0.1', server.server_address[1], warm=True)
