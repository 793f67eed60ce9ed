"""The lecture you can touch: a local web server for the demo page and its JSON API.

    server = demo.serve('127.0.0.1', 0)          # port 0: a free port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.url)                            # http://127.0.0.1:PORT/
    server.shutdown(); server.server_close()

The standard library's `ThreadingHTTPServer`: no dependency, one thread per
connection. It serves exactly the files named in `ASSETS` (a fixed table,
so no path reaches any other file) and the routes of `ROUTES` (POST, JSON
in and out, handled by the pure functions of `demo_api` and `demo_learn`).
Every refused request gets a 4xx status and `{"error": message}`, and the
server goes on serving. The server keeps no state between requests: the
page sends its whole state each time, so two tabs share nothing.
"""

import functools
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
import importlib.resources
import ipaddress
import json
import logging
import re
import socket
import time
import urllib.parse

import jax

from linear_jax.maths import losses
from linear_jax.runs import demo_api
from linear_jax.runs import demo_learn

ASSETS = {
  '/': ('index.html', 'text/html; charset=utf-8'),
  '/index.html': ('index.html', 'text/html; charset=utf-8'),
  '/demo.js': ('demo.js', 'text/javascript; charset=utf-8'),
  '/demo.css': ('demo.css', 'text/css; charset=utf-8'),
}
ROUTES = {
  '/api/evaluate': demo_api.handle_evaluate,
  '/api/init': demo_api.handle_init,
  '/api/drag': demo_api.handle_drag,
  '/api/dataset': demo_api.handle_dataset,
  '/api/step': demo_learn.handle_step,
  '/api/search': demo_learn.handle_search,
  '/api/surface': demo_learn.handle_surface,
}
GET_ROUTES = ('/api/config',)


def asset(name):
  """The bytes of one of the page's files (package data of `linear_jax.runs.demo_page`)."""
  return importlib.resources.files('linear_jax.runs').joinpath('demo_page', name).read_bytes()


class Handler(BaseHTTPRequestHandler):
  """One request: an asset (GET), the configuration (GET) or an API call (POST)."""

  server_version = 'linear-jax-demo'
  protocol_version = 'HTTP/1.1'
  # A connection idle this long is closed, and its thread ends: a page keeps its connection while it
  # is used, and a client that opens connections and goes quiet cannot hold threads for ever.
  timeout = 2.0
  # An answer is written as headers then body: with Nagle's algorithm the body would wait for the
  # browser's delayed acknowledgement of the headers (up to 40 ms), the latency tail of a drag.
  disable_nagle_algorithm = True

  def log_message(self, format, *args):  # noqa: A002 - the base class's signature
    logging.debug('demo: %s - %s', self.address_string(), format % args)

  def handle(self):
    try:
      super().handle()
    except ConnectionError:  # the page dropped a request it no longer wanted: a newer drag replaced it
      self.close_connection = True
      logging.debug('demo: %s closed the connection before its answer', self.address_string())

  def _send(self, status, body, content_type='application/json', extra=None):
    self.send_response(status)
    self.send_header('Content-Type', content_type)
    self.send_header('Content-Length', str(len(body)))
    self.send_header('Cache-Control', 'no-store')
    self.send_header('X-Content-Type-Options', 'nosniff')
    for k, v in (extra or {}).items():
      self.send_header(k, v)
    self.end_headers()
    if self.command != 'HEAD':
      self.wfile.write(body)

  def _json(self, status, obj, extra=None):
    self._send(status, json.dumps(obj, allow_nan=False).encode(), extra=extra)

  def _error(self, status, message, extra=None):
    self._json(status, {'error': message, 'status': int(status)}, extra)

  def send_error(self, code, message=None, explain=None):
    """The base class's own refusals (a request line or a header too long, a method it has no `do_` for)
    in JSON too, as every refusal of the server is."""
    del explain
    self.close_connection = True
    self._error(code, message or HTTPStatus(code).phrase)

  def _path(self):
    return urllib.parse.urlsplit(self.path).path

  def do_GET(self):
    path = self._path()
    if path in ASSETS:
      name, kind = ASSETS[path]
      self._send(HTTPStatus.OK, asset(name), kind)
    elif path in GET_ROUTES:
      self._json(HTTPStatus.OK, demo_api.config(self.server.default_loss))
    elif path in ROUTES:
      self._error(HTTPStatus.METHOD_NOT_ALLOWED, f'{path} takes POST with a JSON body.', {'Allow': 'POST'})
    else:
      self._error(HTTPStatus.NOT_FOUND, f'No such page: {path[:100]}')

  do_HEAD = do_GET

  def do_POST(self):
    path = self._path()
    if path not in ROUTES:
      if path in ASSETS or path in GET_ROUTES:
        self.close_connection = True
        return self._error(HTTPStatus.METHOD_NOT_ALLOWED, f'{path} takes GET.', {'Allow': 'GET'})
      self.close_connection = True
      return self._error(HTTPStatus.NOT_FOUND, f'No such route: {path[:100]}')
    refused = self._not_from_the_page()
    if refused:
      self.close_connection = True
      return self._error(*refused)
    body = self._read_body()
    if body is None:
      return None
    try:
      req = json.loads(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, an integer of > 4,300 digits
      return self._error(HTTPStatus.BAD_REQUEST, f'The body is not valid JSON: {e}')
    try:
      start = time.perf_counter()
      answer = json.dumps(ROUTES[path](req), allow_nan=False).encode()
      # The server's share of the answer (the browser shows it beside the request's timing).
      ms = (time.perf_counter() - start) * 1e3
    except demo_api.RequestError as e:
      return self._error(e.status, str(e))
    except Exception as e:  # noqa: BLE001 - the server must go on serving; the message says what failed
      logging.exception('demo: %s failed', path)
      return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f'{type(e).__name__}: {e}')
    return self._send(HTTPStatus.OK, answer, extra={'Server-Timing': f'compute;dur={ms:.2f}'})

  def _not_from_the_page(self):
    """`(status, message)` refusing an API call that another site's page could have made, else `None`.

    Any page the user visits may POST to this server. A `Content-Type` other than JSON is the only kind
    a foreign page can send without asking first (browsers ask with OPTIONS, which is refused); an
    `Origin` other than the server's own names such a page; a `Host` that is a domain name other than
    `localhost` or this machine's is one that DNS rebinding pointed here.
    """
    kind = self.headers.get('Content-Type', '').split(';')[0].strip().lower()
    if kind != 'application/json':
      return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, 'The API takes a JSON body: Content-Type: application/json.'
    host = self.headers.get('Host', '')
    try:
      name = urllib.parse.urlsplit(f'//{host}').hostname
    except ValueError:
      name = None
    if not _this_machine(name):  # the port may differ: a forwarded one (ssh -L, docker -p) is the page's
      return (
        HTTPStatus.FORBIDDEN,
        f'Host {host[:100]!r} is not this server: open the page at its own address.',
      )
    origin = self.headers.get('Origin')
    if origin is not None and urllib.parse.urlsplit(origin).netloc.lower() != host.lower():
      return HTTPStatus.FORBIDDEN, f'A page of {origin[:100]} may not call this server; open {host} itself.'
    return None

  def _read_body(self):
    """The request's body, or None after answering 411 / 413 / 400."""
    length = self.headers.get('Content-Length')
    if self.headers.get('Transfer-Encoding') or length is None:
      self.close_connection = True
      self._error(HTTPStatus.LENGTH_REQUIRED, 'A POST needs a Content-Length (no chunked bodies).')
      return None
    lengths = set(self.headers.get_all('Content-Length'))
    digits = re.fullmatch(r'[0-9]+', length.strip())  # not '+10', '1_0' or '²', which int() or isdigit() take
    size = int(length) if len(lengths) == 1 and digits else -1  # nor two different lengths
    if size < 0:
      self.close_connection = True
      self._error(HTTPStatus.BAD_REQUEST, f'Bad Content-Length: {length[:40]!r}')
      return None
    if size > demo_api.MAX_BODY:
      self.close_connection = True  # the body is not read: the connection closes after the answer
      self._error(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f'The body has {size} bytes; at most {demo_api.MAX_BODY}.'
      )
      return None
    try:
      body = self.rfile.read(size)
    except TimeoutError:  # the client stopped sending: it is told, not left waiting on a closed socket
      body = b''
    if len(body) < size:
      self.close_connection = True
      self._error(HTTPStatus.BAD_REQUEST, f'The body ended before its Content-Length of {size} bytes.')
      return None
    return body

  def _refuse(self):
    self.close_connection = True
    self._error(HTTPStatus.METHOD_NOT_ALLOWED, f'{self.command} is not served here.', {'Allow': 'GET, POST'})

  do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse


class DemoServer(ThreadingHTTPServer):
  """The demo's HTTP server; `url` is its address, `default_loss` the loss the page starts with."""

  daemon_threads = True
  allow_reuse_address = True
  request_queue_size = 64

  def __init__(self, address, default_loss):
    super().__init__(address, Handler)
    self.default_loss = default_loss

  @property
  def url(self):
    host, port = self.server_address[:2]
    host = f'[{host}]' if ':' in host else host
    return f'http://{host}:{port}/'


def warm_up(loss):
  """Compiles the programs of the first interactions (evaluate, drag, one step), so they answer fast."""
  ds = demo_api.handle_dataset({'name': 'blobs'})
  state = {**ds, 'loss': loss, 'reg': 0.001}
  state['model'] = demo_api.handle_init(state)['model']
  for steps in (1, 8):
    demo_learn.handle_step(
      {**state, 'steps': steps, 'optimizer': {'method': 'momentum'}}
    )  # the page's default


def loopback(address):
  """Whether a bound `address` is this machine's alone (127.0.0.0/8, ::1)."""
  try:
    return ipaddress.ip_address(address).is_loopback
  except ValueError:
    return address == 'localhost'


@functools.cache
def _own_names():
  """`localhost` and this machine's names, looked up once (`getfqdn` may ask DNS), by `serve`."""
  return frozenset(n.lower() for n in ('localhost', socket.gethostname(), socket.getfqdn()))


def _this_machine(name):
  """Whether a `Host` header's name is `localhost`, an IP address or this machine's own name, not a domain
  that DNS could point here from another site."""
  if not name:
    return False
  if name.lower() in _own_names():
    return True
  try:
    ipaddress.ip_address(name)
  except ValueError:
    return False
  return True


def serve(host='127.0.0.1', port=8000, loss=None, warm=True):
  """A bound `DemoServer` (not yet serving: call `serve_forever`, in a thread if you like).

  Args:
    host: the address to listen on; the loopback address by default.
    port: the port; 0 picks a free one (read it from `server.url`).
    loss: a registered loss name, or `FILE.py:NAME` / `package.module:NAME`
      (loaded and registered here, at start, never from a request): the
      loss the page starts with. Default: the multiclass SVM.
    warm: compile the first interactions before returning (after binding: a port in use is said at
      once, not after the compiles).
  """
  jax.config.update('jax_enable_x64', True)  # the gradient check compares in float64
  name = 'svm' if loss is None else losses.get_loss(loss).name
  spec = losses.LOSSES[name]
  server = DemoServer((host, port), name)
  _own_names()  # before the first request, not during it
  if warm:
    try:
      warm_up(name if spec.targets != 'binary' else 'svm')
    except BaseException:
      server.server_close()
      raise
  return server
