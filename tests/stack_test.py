"""`_stack.in_one_block`: calls below it cross no boundary of the interpreter's frame-stack blocks."""

import resource

import pytest

from linear_jax import _stack

PADS = range(400)  # frames of `_at_depth`, about 100 bytes each: more than two 16 KiB blocks
CALLS = 300


def _leaf():
  return None


# A frame larger than `_at_depth`'s (64 slots of 8 bytes): at some pad the space left in a block is
# less than it needs, whatever the block's layout.
_leaf.__code__ = _leaf.__code__.replace(co_stacksize=64)


def _at_depth(n):
  """Calls `_leaf` `CALLS` times from `n` frames deeper; the minor page faults that cost."""
  if n:
    return _at_depth(n - 1)
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(CALLS):
    _leaf()
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_a_call_across_a_block_boundary_maps_a_block_each_time_but_not_below_in_one_block():
  # Somewhere in PADS, `_leaf`'s frame is the first of a new block: each call maps it (a fresh page,
  # touched: a minor fault) and its return unmaps it.
  plain = max(_at_depth(pad) for pad in PADS)
  assert plain >= CALLS, plain  # the mechanism `_stack` works around, seen here
  inside = max(_stack.in_one_block(_at_depth, pad) for pad in PADS)
  assert inside < CALLS // 10, inside


def test_in_one_block_passes_arguments_and_results_and_errors():
  assert _stack.in_one_block(lambda a, b=0: (a, b), 1, b=2) == (1, 2)
  with pytest.raises(ValueError, match="'x'"):
    _stack.in_one_block(int, 'x')
