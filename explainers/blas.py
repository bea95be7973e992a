"""One BLAS thread while methods run: onnxruntime owns the cores.

numpy hands matrix products (objective scores, RISE renders, IG path sums, LIME fits, CAM
upsampling) to OpenBLAS, whose worker threads keep spinning for a while after each product. Beside
onnxruntime's own thread pool they steal its cores: on 2 cores that cost Integrated Gradients ~12%
and RISE ~35% of their throughput (``bench/run.py``). The products a method does are small, so one
BLAS thread loses nothing.

The OpenBLAS that numpy ships takes a thread count only from the main thread (one set from another
thread is ignored), and then every thread uses it. So the limit is the main thread's: there
:func:`one_blas_thread` sets it and, when the outermost block ends, restores the counts from before;
on other threads it does nothing. ``explain()`` wraps each step of a method in it (never holding it
while the caller consumes an event), and the server, whose runs are on worker threads, holds it from
its main thread for as long as it serves (``server.app.serve_forever``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0  # nested blocks on the main thread
_original = None  # the outermost block's limiter: it remembers the counts to restore


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController  # a dependency of scikit-learn

    return ThreadpoolController()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Keep BLAS to one thread inside the block (nestable); a no-op off the main thread. Every entry
    applies the limit (whatever changed it since); the outermost exit restores the counts."""
    global _depth, _original
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    limiter = _controller().limit(limits=1, user_api="blas")
    if _depth == 0:
        _original = limiter
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            _original.restore_original_limits()
            _original = None
