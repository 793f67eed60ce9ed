"""A run's progress on the screen: one line that updates in place on a terminal.

On a terminal the line of the latest epoch is rewritten in place (`\\r`), at
most `REFRESH_S` apart, and ends with a newline when the run ends, so a
default run prints its progress line and its result line. Written to a file
or a pipe (a log), a line is kept every `LOG_EVERY_S` seconds, and the last
epoch's always. `verbose` keeps every epoch's line, as before.
"""

import sys
import time

REFRESH_S = 0.1  # a terminal line is redrawn at most this often
LOG_EVERY_S = 5.0  # a log keeps a line this often


class Progress:
  """`progress(line)` after each epoch; `progress.close()` when the run ends.

  Args:
    stream: where the lines go (`sys.stdout` if not given).
    verbose: every line, each on its own line.
    clock: the time in seconds (`time.monotonic`), replaceable in tests.
  """

  def __init__(self, stream=None, verbose=False, clock=time.monotonic):
    self._stream = stream or sys.stdout
    self._verbose = verbose
    self._clock = clock
    self._terminal = bool(getattr(self._stream, 'isatty', lambda: False)())
    self._shown = None  # when the last line was shown
    self._pending = None  # the latest line not yet shown
    self._width = 0  # of the line now on the terminal

  def __call__(self, line):
    now = self._clock()
    every = REFRESH_S if self._terminal else LOG_EVERY_S
    if self._verbose or self._shown is None or now - self._shown >= every:
      self._show(line)
      self._shown = now
    else:
      self._pending = line

  def _show(self, line):
    self._pending = None
    if self._terminal and not self._verbose:
      self._stream.write('\r' + line.ljust(self._width))
      self._width = len(line)
    else:
      self._stream.write(line + '\n')
    self._stream.flush()

  def close(self):
    """Shows the last line if it was held back, and ends the terminal's line."""
    if self._pending is not None:
      self._show(self._pending)
    if self._terminal and not self._verbose and self._width:
      self._stream.write('\n')
      self._stream.flush()
    self._width = 0
