"""RISE masks: the tables, their graph prefix, the grid/shift sampler, the exact aggregator and the convergence watch.

A RISE mask is ``M = A[dy] · G · B[dx]`` [H, W]: a binary grid ``G`` [s, s] upsampled bilinearly to
(s + 1)·cell and cropped at the shift (dy, dx), written with the separable tables ``A`` [cell_h, H, s]
and ``B`` [cell_w, s, W], built once (:class:`GridTables`) for the graph prefix (:func:`grid_masks`) and the aggregator.
Because the map ``Σᵢ vᵢ Mᵢ`` is linear in the grids, the aggregator never builds a full-resolution
mask: it sums ``vᵢ Gᵢ`` per shift (s² numbers per sample) and renders the map on demand as
``Σ_dy A[dy] (Σ_dx K[dy, dx] B[dx])`` — two small matrix products, independent of the mask count.
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from ...graph.perturbation import MASK, PREFIX, MaskSource
from ...graph.perturbation import prefix_node as node
from .bilinear import bilinear_matrix

SAMPLINGS = ("random", "quasi_random")
BLOCK = 256
"""Masks drawn at a time. Fixed (and a power of two, for the Sobol sequence's balance), so the
draws, hence the map, do not depend on the batch size."""


@dataclass(frozen=True)
class GridTables:
    """The interpolation tables of a RISE mask family, float32 as the graph uses them.

    ``rows`` [cell_h, H, s]: ``rows[dy] = R[dy : dy + H]``; ``cols`` [cell_w, s, W]: ``cols[dx] =
    C[dx : dx + W]ᵀ``, with R, C the bilinear matrices from s to (s + 1)·cell samples.
    """

    rows: NDArray[np.float32]
    cols: NDArray[np.float32]

    @classmethod
    def build(cls, height: int, width: int, grid: int) -> GridTables:
        cell_h, cell_w = -(-height // grid), -(-width // grid)
        r = bilinear_matrix(grid, (grid + 1) * cell_h)
        c = bilinear_matrix(grid, (grid + 1) * cell_w)
        rows = np.stack([r[d : d + height] for d in range(cell_h)]).astype(np.float32)
        cols = np.stack([c[d : d + width].T for d in range(cell_w)]).astype(np.float32)
        return cls(rows, cols)

    @property
    def cells(self) -> tuple[int, int]:
        """Shift ranges (cell_h, cell_w): dy ∈ [0, cell_h), dx ∈ [0, cell_w)."""
        return self.rows.shape[0], self.cols.shape[0]

    def mask_source(self) -> MaskSource:
        """The graph prefix: inputs ``grids`` float [n, s, s] and ``shifts`` int64 [n, 2] (dy, dx in
        [0, cell)); mask i is ``rows[dy] · G · cols[dx]`` — per sample only s² + 2 numbers travel."""
        _, height, grid = self.rows.shape
        width = self.cols.shape[2]
        p = PREFIX
        inits = [numpy_helper.from_array(self.rows, p + "row_table"),
                 numpy_helper.from_array(self.cols, p + "col_table"),
                 numpy_helper.from_array(np.array([0], np.int64), p + "zero"),
                 numpy_helper.from_array(np.array([1], np.int64), p + "one"),
                 numpy_helper.from_array(np.array([2], np.int64), p + "two"),
                 numpy_helper.from_array(np.array([-1], np.int64), p + "flat"),
                 numpy_helper.from_array(np.array([-1, 1, height, width], np.int64), p + "mask_shape")]
        nodes = [
            node("Slice", ["shifts", p + "zero", p + "one", p + "one"], p + "dy2"),
            node("Slice", ["shifts", p + "one", p + "two", p + "one"], p + "dx2"),
            node("Reshape", [p + "dy2", p + "flat"], p + "dy"),
            node("Reshape", [p + "dx2", p + "flat"], p + "dx"),
            node("Gather", [p + "row_table", p + "dy"], p + "row_weights", axis=0),  # [n, H, s]
            node("Gather", [p + "col_table", p + "dx"], p + "col_weights", axis=0),  # [n, s, W]
            node("MatMul", [p + "row_weights", "grids"], p + "rows_up"),  # [n, H, s]
            node("MatMul", [p + "rows_up", p + "col_weights"], p + "up"),  # [n, H, W]
            node("Reshape", [p + "up", p + "mask_shape"], MASK),
        ]
        inputs = [helper.make_tensor_value_info("grids", TensorProto.FLOAT, ["n", grid, grid]),
                  helper.make_tensor_value_info("shifts", TensorProto.INT64, ["n", 2])]
        return MaskSource(f"grid{grid}", inputs, nodes, inits)

    def masks(self, grids: NDArray[np.floating], shifts: NDArray[np.integer]) -> NDArray[np.float64]:
        """Full-resolution masks [n, H, W] (for tests and small n; the aggregator avoids them)."""
        rows = self.rows[shifts[:, 0]].astype(np.float64)
        cols = self.cols[shifts[:, 1]].astype(np.float64)
        return rows @ grids.astype(np.float64) @ cols


def grid_masks(height: int, width: int, grid: int) -> MaskSource:
    """RISE masks (Petsiuk et al. 2018) of s = ``grid`` cells per side for an H×W image: each grid is
    upsampled bilinearly to (s + 1)·cell and cropped at the shift (:meth:`GridTables.mask_source`)."""
    return GridTables.build(height, width, grid).mask_source()


class GridSampler:
    """Draws ``count`` grids [s, s] (1 = keep, probability ``keep``) and shifts [2] from ``rng``.

    ``random``: independent Bernoulli cells and uniform shifts, as in the paper. ``quasi_random``:
    a scrambled Sobol sequence (scipy.stats.qmc) over s² + 2 dimensions — the shifts take the first
    two (the best-distributed ones), each cell one more — thresholded at ``keep``; every cell is then
    kept in a fraction ≈ p of any 2^k consecutive masks, and pairs of cells are balanced too.

    Blocks of :data:`BLOCK` masks are drawn in order on first use and dropped by :meth:`release`;
    :meth:`take` is thread-safe (the batched loop builds the next feed on a helper thread).
    """

    def __init__(self, count: int, grid: int, keep: float, cells: tuple[int, int], sampling: str,
                 rng: np.random.Generator):
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; allowed: {', '.join(SAMPLINGS)}")
        self.count, self.grid, self.keep, self.cells = count, grid, keep, np.asarray(cells)
        self._rng = rng
        self._sobol = None
        if sampling == "quasi_random":
            from scipy.stats import qmc

            self._sobol = qmc.Sobol(grid * grid + 2, scramble=True, rng=rng)
        self._blocks: dict[int, tuple[NDArray[np.float32], NDArray[np.int64]]] = {}
        self._drawn = 0  # blocks drawn so far
        self._lock = threading.Lock()

    def _draw(self) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        s = self.grid
        if self._sobol is None:
            cells = self._rng.random((BLOCK, s, s))
            shifts = self._rng.integers(0, self.cells, (BLOCK, 2))
        else:
            points = self._sobol.random(BLOCK)
            shifts = np.minimum((points[:, :2] * self.cells).astype(np.int64), self.cells - 1)
            cells = points[:, 2:].reshape(BLOCK, s, s)
        return (cells < self.keep).astype(np.float32), shifts.astype(np.int64)

    def take(self, start: int, stop: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Grids float32 [n, s, s] and shifts int64 [n, 2] of masks ``start .. stop``."""
        first, last = start // BLOCK, (stop - 1) // BLOCK
        with self._lock:
            while self._drawn <= last:
                self._blocks[self._drawn] = self._draw()
                self._drawn += 1
            parts = [self._blocks[b] for b in range(first, last + 1)]  # KeyError: a released block
        offset = first * BLOCK
        grids = np.concatenate([p[0] for p in parts])[start - offset : stop - offset]
        shifts = np.concatenate([p[1] for p in parts])[start - offset : stop - offset]
        return grids, shifts

    def feed(self, start: int, stop: int) -> dict[str, NDArray]:
        """The per-sample inputs of ``grid_masks`` for masks ``start .. stop``."""
        grids, shifts = self.take(start, stop)
        return {"grids": grids, "shifts": shifts}

    def release(self, stop: int) -> None:
        """Forget the blocks that lie entirely before mask ``stop``."""
        with self._lock:
            for b in [b for b in self._blocks if (b + 1) * BLOCK <= stop]:
                del self._blocks[b]


class GridMaskSum:
    """Aggregator: ``S = Σᵢ vᵢ Mᵢ / (n · p)`` [T, H, W] over the n masks added so far, exactly.

    Keeps ``K[t, dy, dx] = Σ_{i: shift i = (dy, dx)} vᵢₜ Gᵢ`` (float64 [T, cell_h, cell_w, s, s]);
    adding a sample costs O(T·s²), rendering O(T·(cell_h·s·cell_w·s·W + H·cell_h·s·W)).
    """

    def __init__(self, tables: GridTables, targets: int, keep: float):
        cell_h, cell_w = tables.cells
        s = tables.rows.shape[2]
        self.keep, self.count, self.targets = keep, 0, targets
        self.kernels = np.zeros((cell_h * cell_w, targets * s * s), np.float64)
        # rows as [H, cell_h·s] and cols as [cell_w·s, W]: the render is two plain matrix products
        self._rows = tables.rows.astype(np.float64).transpose(1, 0, 2).reshape(tables.rows.shape[1], -1)
        self._cols = tables.cols.astype(np.float64).reshape(-1, tables.cols.shape[2])
        self._shape = (targets, cell_h, cell_w, s, s)

    def add(self, grids: NDArray[np.floating], shifts: NDArray[np.integer], values: NDArray[np.floating]) -> None:
        """Accumulate masks (grids [n, s, s], shifts [n, 2]) weighted by ``values`` [n, T]."""
        n = len(grids)
        weighted = values.astype(np.float64)[:, :, None] * grids.reshape(n, 1, -1)  # [n, T, s²]
        np.add.at(self.kernels, shifts[:, 0] * self._shape[2] + shifts[:, 1], weighted.reshape(n, -1))
        self.count += n

    def render(self) -> NDArray[np.float64]:
        """The map [T, H, W] (float64); zeros before any mask."""
        t, cell_h, cell_w, s, _ = self._shape
        # explain() runs this with one BLAS thread (explainers/blas.py): OpenBLAS workers woken by a 224²
        # product keep spinning after it, costing onnxruntime ~90 ms per render on 2 cores
        k = self.kernels.reshape(cell_h, cell_w, t, s, s).transpose(2, 0, 3, 1, 4)  # [T, dy, r, dx, c]
        partial = k.reshape(t * cell_h * s, cell_w * s) @ self._cols  # Σ_dx K[dy, dx] B[dx]: [T·dy·r, W]
        maps = self._rows @ partial.reshape(t, cell_h * s, -1)  # Σ_dy A[dy] (...): [T, H, W]
        return maps / max(self.count * self.keep, 1e-300)


class LastTenPercent:
    """How much the map moved over the last 10% of the masks: ``‖S_n − S_0.9n‖ / ‖S_n‖``.

    With ``tolerance > 0`` it is checked at mask counts n = 10·k·u (u ≈ N/500, so every ≈2% of the
    N masks) once n ≥ N/10, against the map kept at exactly 0.9·n; a change below the tolerance stops
    the run there. The checkpoints depend on N only — never on the batch size — so an early stop
    gives the same map whatever the batching. The full run compares with the map at ⌊0.9·N⌋ masks.
    """

    def __init__(self, total: int, tolerance: float):
        self.total, self.tolerance = total, tolerance
        self.kept: dict[int, NDArray[np.float64]] = {}
        self.change = math.nan
        self.compare = {total: 9 * total // 10}  # check count -> count of the map it compares with
        if tolerance > 0:
            unit = max(1, math.ceil(total / 500))
            for n in range(10 * unit, total, 10 * unit):
                if 10 * n >= total:
                    self.compare[n] = 9 * (n // 10)
        self._keep = set(self.compare.values())  # counts whose map later checks compare with
        self.points = sorted(set(self.compare) | self._keep)  # counts at which the map is rendered

    def split(self, start: int, stop: int) -> list[int]:
        """The ends of the pieces of ``start .. stop`` to aggregate before :meth:`observe`."""
        return self.points[bisect.bisect_right(self.points, start) : bisect.bisect_left(self.points, stop)] + [stop]

    def observe(self, count: int, aggregate: GridMaskSum) -> bool:
        """Called with the aggregate of the first ``count`` masks; True when the run may stop."""
        if count not in self.compare and count not in self._keep:
            return False
        current = aggregate.render()
        if count in self._keep:
            self.kept[count] = current
        if count not in self.compare:
            return False
        earlier = self.kept.get(self.compare[count], 0.0)  # absent only for 0 masks: an empty map
        self.change = float(np.linalg.norm(current - earlier) / max(np.linalg.norm(current), 1e-300))
        for n in [n for n in self.kept if n < self.compare[count]]:
            del self.kept[n]
        return count < self.total and self.change < self.tolerance
