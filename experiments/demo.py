r"""The lecture you can touch: a local web page of the linear classifier, computed by the library.

    linear-jax demo [--host=127.0.0.1] [--port=8000] [--loss=FILE.py:NAME]

Starts a web server on the loopback address, prints its address and serves
the page until Ctrl-C or SIGTERM. On the page you drag the classes' lines,
the points, nudge W and b, switch the loss and the penalty, load the
lecture's hard cases and their feature maps, take gradient steps, race the
search methods and watch the gradient check; every number comes from the
library (the server computes, the page draws). --port=0 picks a free port.
"""

import signal
import sys
import threading

from absl import flags

from . import common

flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (the loopback address: only this machine).')
flags.DEFINE_integer('port', 8000, 'Port to listen on; 0 picks a free one.', lower_bound=0, upper_bound=65535)
flags.DEFINE_string(
  'loss', None, 'The loss the page starts with: a registered name, or FILE.py:NAME of your own (loaded here).'
)

FLAGS = flags.FLAGS


def main(argv):
  del argv
  common.start(FLAGS)
  from linear_jax.runs import demo  # pylint: disable=import-outside-toplevel

  if not FLAGS.host.strip():
    sys.exit('demo: --host is empty, which would listen on every network address; give 127.0.0.1.')
  try:
    server = demo.serve(FLAGS.host, FLAGS.port, FLAGS.loss)
  except (OSError, ValueError) as e:
    sys.exit(f'demo: {e}')
  if not demo.loopback(server.server_address[0]):
    print(
      f'demo: --host={FLAGS.host} serves the page and its API to every machine that can reach this one.',
      file=sys.stderr,
    )
  stop = threading.Event()

  def on_signal(signum, frame):
    del frame
    if not stop.is_set():
      stop.set()
      threading.Thread(target=server.shutdown, daemon=True).start()  # shutdown waits for serve_forever

  signal.signal(signal.SIGTERM, on_signal)
  signal.signal(signal.SIGINT, on_signal)
  print(f'serving the lecture at {server.url}', flush=True)
  try:
    server.serve_forever(poll_interval=0.2)
  finally:
    server.server_close()
  print('demo: stopped', flush=True)


if __name__ == '__main__':
  common.run(main)
