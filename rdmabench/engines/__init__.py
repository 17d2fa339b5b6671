"""Benchmark engines: what actually posts work requests and polls completions.

- ``native`` (the default): ``rdmabench.engines.native``, a thin face over the C type
  ``rdmabench._native.Endpoint``. The hot loops (write/read/send bandwidth and latency, perftest's
  semantics) run in C with the GIL released, timed with rdtsc. Use it for every number.
- ``python``: a pyverbs reference engine (another module, not this one). It is slow (a Python
  object per completion) and exists to cross-check the native engine's correctness, never to
  measure.

Both hand back the same run record (see ``rdmabench.engines.native`` for its keys).
"""
