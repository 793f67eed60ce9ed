"""The data path: how the rows of a dataset reach the compiled step.

`factory.make(cfg, dataset)` is the one place that chooses among the
implementations (in memory, streamed in blocks, data-parallel over devices,
lockstep over several processes); everything above it (fit, L-BFGS, sweeps,
paths, search, the report) reaches the rows only through what it returns.
`base` holds what every implementation shares; `resident`, `parallel_path`
and `streamed_path` the implementations; `preparation` how a loaded dataset
becomes the splits they read. `stream` (blocks from memory maps,
one ahead on the device), `parallel` (meshes, shard_map and pmap epochs) and
`multihost` (what the processes of a run agree on) are their parts, over
`transfer` (host copies, one transfer) and `blocks` (a memory map a block at
a time).
"""
