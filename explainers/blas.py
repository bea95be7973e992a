"""One BLAS thread while methods run: onnxruntime owns the cores.

numpy hands matrix products (objective scores, RISE renders, IG path sums, LIME fits, CAM
upsampling) to OpenBLAS, whose worker threads keep spinning for a while after each product. Beside
onnxruntime's own thread pool they steal its cores: on 2 cores that cost Integrated Gradients ~12%
and RISE ~35% of their throughput (``bench/run.py``). The products a method does are small, so one
BLAS thread loses nothing.

The limit is counted: the first run to enter sets it, the last to leave restores what was there,
so overlapping runs neither undo each other's limit nor leave it behind. It takes effect when set
from the main thread (then every thread sees it); the OpenBLAS that numpy ships ignores a thread count
set from another thread. So ``explain()`` called from the main thread limits itself, and the server,
whose runs are on worker threads, holds the limit from its main thread for as long as it serves
(``server.app.serve_forever``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_users = 0
_original = None  # the limiter of the first run in: it remembers the thread counts to restore


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController  # a dependency of scikit-learn

    return ThreadpoolController()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Keep BLAS to one thread inside the block (nestable, thread-safe). Every entry applies the
    limit (whatever changed it since); the last exit restores the counts from before the first."""
    global _users, _original
    with _lock:
        limiter = _controller().limit(limits=1, user_api="blas")
        if _users == 0:
            _original = limiter
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _original.restore_original_limits()
                _original = None
