"""Deep Python calls in one block of the interpreter's frame stack.

CPython (3.11 and later) keeps the frames of Python calls in blocks of
16 KiB: a call that does not fit in the current block maps a new one
(`mmap`), and its return unmaps it. Code that calls up and down across such
a boundary pays a system call pair each time. JAX does so: importing it
reads the metadata of every installed package in a loop of small calls, and
tracing a program recurses through hundreds of frames. Where the boundary
falls depends on how deep the caller already is, so the same run cost
35,000 mmap/munmap pairs (0.25 s of system time) launched as `linear-jax
train` and 3,600 as `python -m experiments.train` (counted with `strace`).

`in_one_block(fn, ...)` calls `fn` from a frame that reserves 1 MiB of stack
slots it never uses (`co_stacksize`). That frame gets a block of its own of
2 MiB, and every frame `fn` calls fits in the rest: no boundary is crossed
below it. The reserved slots are address space; memory is only touched where
frames are.
"""

RESERVED_SLOTS = 2**17  # 1 MiB of 8-byte slots: the block is the next power of two above it


def in_one_block(fn, *args, **kwargs):
  """`fn(*args, **kwargs)`, with every Python frame below it in one 2 MiB block of the frame stack."""
  return fn(*args, **kwargs)


in_one_block.__code__ = in_one_block.__code__.replace(co_stacksize=RESERVED_SLOTS)
