"""How much memory there is, and the one-line refusal when a thing does not fit.

`memory_available` asks the kernel for the bytes that can be allocated
without swapping; `device_memory_available` is the memory free where JAX
computes (an accelerator's own, or the host's on a CPU); `check_memory`
refuses, with both figures (`size_text`) and what to do instead, when a need
exceeds them.
"""

import os

import jax

STREAM_ADVICE = 'train with --stream, which reads the file in blocks instead of holding it.'


def memory_available() -> int | None:
  """Bytes the kernel says can be allocated without swapping (`MemAvailable`), or `None`."""
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  except (ValueError, OSError, AttributeError):
    return None


def device_memory_available(device=None) -> int | None:
  """Bytes free where JAX computes on `device` (JAX's first by default): an accelerator's own free
  memory, or the host's (`memory_available`) on a CPU, whose arrays live there."""
  device = device or jax.devices()[0]
  stats = device.memory_stats() if device.platform != 'cpu' else None
  if stats and 'bytes_limit' in stats:
    return stats['bytes_limit'] - stats.get('bytes_in_use', 0)
  return memory_available()


def check_memory(
  need: int,
  name: str,
  available: int | None = None,
  advice: str = STREAM_ADVICE,
  what: str = 'the prepared data',
) -> None:
  """Raises, with the figures and `advice`, if `need` bytes (of `what`) cannot fit in `available`
  bytes (`None`: the host's free memory, `memory_available`)."""
  available = memory_available() if available is None else available
  if available is not None and need > available:
    raise ValueError(
      f'{name}: {what} needs {size_text(need)} of memory but only {size_text(available)} is available; '
      + advice
    )


def size_text(num_bytes):
  """`num_bytes` for a message: '1.23 GB', or '45.6 MB' below a gigabyte."""
  return f'{num_bytes / 1e9:.2f} GB' if num_bytes >= 1e9 else f'{num_bytes / 1e6:.1f} MB'
