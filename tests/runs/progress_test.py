"""The progress display: one line in place on a terminal, a line every 5 s in a log, every line verbose."""

import io

from linear_jax.runs import progress


class _Stream(io.StringIO):
  def __init__(self, terminal):
    super().__init__()
    self._terminal = terminal

  def isatty(self):
    return self._terminal


class _Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def _show(terminal, verbose=False, epochs=100, dt=0.01):
  stream, clock = _Stream(terminal), _Clock()
  display = progress.Progress(stream, verbose=verbose, clock=clock)
  for e in range(1, epochs + 1):
    display(f'epoch {e}')
    clock.now += dt
  display.close()
  return stream.getvalue()


def test_a_terminal_gets_one_line_rewritten_in_place_ending_with_the_last_epoch():
  out = _show(terminal=True)
  assert out.count('\n') == 1 and out.endswith('epoch 100\n')
  # 100 epochs 10 ms apart, redrawn at most every 0.1 s: about one in ten drawn, each with a carriage return.
  assert 5 <= out.count('\r') <= 15
  assert 'epoch 1' in out.split('\r')[1]


def test_a_shorter_line_wipes_what_the_longer_one_left():
  stream, clock = _Stream(True), _Clock()
  display = progress.Progress(stream, clock=clock)
  display('epoch 9 loss 0.123456')
  clock.now += 1
  display('epoch 10')
  display.close()
  assert stream.getvalue().split('\r')[-1] == 'epoch 10'.ljust(len('epoch 9 loss 0.123456')) + '\n'


def test_a_log_keeps_a_line_every_few_seconds_and_the_last():
  out = _show(terminal=False, epochs=100, dt=0.5)  # 50 s of epochs: a line each 5 s, and the last
  lines = out.splitlines()
  assert '\r' not in out and lines[0] == 'epoch 1' and lines[-1] == 'epoch 100'
  assert 10 <= len(lines) <= 12


def test_verbose_keeps_every_line():
  assert _show(terminal=True, verbose=True, epochs=7).splitlines() == [f'epoch {e}' for e in range(1, 8)]
