"""river's Half-Space Trees as arrays, so a whole batch of readings is scored in a few numpy calls.

The trees are grown by river itself (``river.tree.padded.make_padded_tree`` with the same random
generator and limits as ``river.anomaly.HalfSpaceTrees``), then laid out as one heap for the whole
forest: tree ``t`` of ``T`` has its root at node ``T + t``, and node ``h`` has children ``2h + 1``
(value below the split) and ``2h``. Descending a tree is then ``h = 2h + below`` for every tree
alike, the nodes of depth ``d`` are ``2**d * T`` up to ``2**(d+1) * T``, and the leaves are the
last ``2**height * T``, tree after tree. What river keeps on node objects (split feature and value)
becomes two arrays, shared by machines with the same seed.

The trees are complete, so a reading's leaf stands for its whole path: a node's mass is the sum of
its leaves' masses, and a reading's score is a sum over its path that is the same for every reading
ending in the same leaf. So the model keeps only leaf masses (``l_mass`` for the latest window,
``r_mass`` for the reference, ~25 kB per machine instead of river's ~3 MB of Python objects),
learning is a count of leaves, and scoring looks up one total per tree, computed once per reference.

A reading's score depends only on the reference masses, which change only when a window of
``window_size`` learned readings completes. So a batch splits into at most a few spans with constant
reference; within a span every reading's score is computed at once. Masses are whole numbers and the
score is a sum of mass * 2**depth, which floats hold exactly in any order, so the scores equal
river's to the last bit once the leaves agree.
"""

from __future__ import annotations

import functools
import random

import numpy as np
from river.tree.padded import PaddedBranch, make_padded_tree

PADDING = 0.15  # river's split padding
SIZE_LIMIT_FRACTION = 0.1  # river stops scoring below 0.1 * window_size (from the original paper)
CHUNK_ROWS = 1024  # rows descended together at most (measured: per row, 2048 rows take 1.4 times as long)


class HalfSpaceForest:
    """The trees, the leaf masses and the window counter of one machine's Half-Space Trees."""

    def __init__(self, n_features: int, n_trees: int, height: int, window_size: int, limit: float, seed: int):
        self.n_trees, self.height, self.window_size = n_trees, height, window_size
        self._shape = (n_features, n_trees, height, limit, seed)
        self.feature, self.split = _grown(*self._shape)
        # a mass never exceeds window_size: 16-bit counters halve the memory of 1,000 machines' models
        mass_type = np.int16 if window_size < 2**15 else np.int32
        self.l_mass = np.zeros((n_trees, 2**height), dtype=mass_type)  # [tree, j]: leaf number tree * 2**height + j
        self.r_mass = np.zeros((n_trees, 2**height), dtype=mass_type)
        self.counter = 0
        self.first_window = True
        self.size_limit = SIZE_LIMIT_FRACTION * window_size
        self.max_score = n_trees * window_size * (2 ** (height + 1) - 1)
        self._totals: list[tuple[np.ndarray, np.ndarray]] = []  # (reference masses, their leaf totals)

    def __getstate__(self) -> dict:
        """Checkpoints keep the layout of earlier versions (every node's mass, each tree in river's
        heap order: children ``2i+1`` below, ``2i+2``), so they restore across versions either way.
        The trees are grown again from their seed (same trees)."""
        return {"n_trees": self.n_trees, "height": self.height, "window_size": self.window_size,
                "_shape": self._shape, "counter": self.counter, "first_window": self.first_window,
                "size_limit": self.size_limit, "max_score": self.max_score,
                "_depth_weight": (2 ** np.arange(self.height + 1, dtype=np.int64))[None, :, None],
                "l_mass": _node_masses(self.l_mass), "r_mass": _node_masses(self.r_mass)}

    def __setstate__(self, state: dict) -> None:
        n_features, n_trees, height, limit, seed = state["_shape"]
        self.__init__(n_features, n_trees, height, state["window_size"], limit, seed)  # type: ignore[misc]
        self.counter, self.first_window = state["counter"], state["first_window"]
        # an inner node's mass is the sum of its leaves': the leaves keep everything
        self.l_mass, self.r_mass = (state[k][:, 2**height - 1:][:, ::-1].copy() for k in ("l_mass", "r_mass"))

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """Leaf of each tree reached by each row: shape (trees, rows), leaf numbers ``tree * 2**height + j``.

        ``x`` holds scaled readings, one row each, features in the forest's order. A value equal to the
        split, or NaN, goes right, as in river (``value < threshold`` goes left). All trees descend
        together, one depth per step: a few numpy calls per depth, whatever the number of rows. Long
        runs go in pieces of at most ``CHUNK_ROWS``: past that the arrays outgrow the cache.
        """
        n_rows = x.shape[0]
        if n_rows <= CHUNK_ROWS:
            return self._leaves(x)
        pieces = -(-n_rows // CHUNK_ROWS)
        step = -(-n_rows // pieces)  # equal pieces
        return np.concatenate([self._leaves(x[i:i + step]) for i in range(0, n_rows, step)], axis=1)

    def _leaves(self, x: np.ndarray) -> np.ndarray:
        """``leaves`` of one piece; ``take`` and in-place ufuncs on whole (trees, rows) arrays."""
        n_rows, n_features = x.shape
        n_trees = self.n_trees
        roots = slice(n_trees, 2 * n_trees)
        # the roots' splits are the same for every row: one gather of whole columns
        node = np.arange(2 * n_trees, 4 * n_trees, 2, dtype=np.intp)[:, None] + (
            x.T[self.feature[roots]] < self.split[roots, None])
        values = np.ascontiguousarray(x).ravel()
        row_start = np.empty_like(node)  # full size: adding it is faster than broadcasting
        row_start[:] = np.arange(0, n_rows * n_features, n_features, dtype=np.intp)
        for _ in range(1, self.height):
            at = self.feature.take(node)
            at += row_start
            below = values.take(at) < self.split.take(node)
            node <<= 1
            node += below
        node -= n_trees << self.height
        return node

    def _leaf_totals(self, r_mass: np.ndarray) -> np.ndarray:
        """river's score total for a reading ending in each leaf: mass * 2**depth summed down the path,
        stopping after the first node whose reference mass is below the size limit. Flat, by leaf number.

        A child's mass never exceeds its parent's (every reading that passed the child passed the
        parent), so a node is reached exactly when its parent's mass is at or above the limit. The
        totals are kept for the last two references: a batch meets the same ones again and again
        (each guess at its outliers, then the next batch), as new arrays with equal masses.
        """
        for i, (known, totals) in enumerate(self._totals):
            if known is r_mass or np.array_equal(known, r_mass):
                if i:
                    self._totals.reverse()
                return totals
        n_trees, first_leaf = self.n_trees, self.n_trees << self.height
        mass = np.zeros(2 * first_leaf)  # by node; a parent's mass is the sum of its children's
        mass[first_leaf:] = r_mass.ravel()
        for lo in (n_trees << d for d in reversed(range(self.height))):
            np.add(mass[2 * lo:4 * lo:2], mass[2 * lo + 1:4 * lo:2], out=mass[lo:2 * lo])
        total = mass * _depth_weights(n_trees, self.height)  # each node's own part, then down the path
        # children side by side: one strided call per side is much faster than broadcasting over pairs
        children, reached = total[2 * n_trees:].reshape(-1, 2), mass[n_trees:first_leaf] >= self.size_limit
        children[:, 0] *= reached
        children[:, 1] *= reached
        for lo in (n_trees << d for d in range(1, self.height + 1)):  # add the parents' totals, depth by depth
            children, parent = total[lo:2 * lo].reshape(-1, 2), total[lo // 2:lo]
            children[:, 0] += parent
            children[:, 1] += parent
        # whole numbers below 2**31: int32 keeps the cache small (1,000 machines' models) and sums exactly
        totals = total[first_leaf:].astype(np.int32)
        self._totals = [(r_mass, totals)] + self._totals[:1]
        return totals

    def _score(self, leaves: np.ndarray, r_mass: np.ndarray) -> np.ndarray:
        """1 - total / largest possible total (totals are whole numbers: summed exactly)."""
        return 1 - self._leaf_totals(r_mass).take(leaves).sum(axis=0) / self.max_score

    def _visits(self, leaves: np.ndarray) -> np.ndarray:
        """How often each leaf was reached by these rows, per tree."""
        shape = self.l_mass.shape
        return np.bincount(leaves.ravel(), minlength=shape[0] * shape[1]).reshape(shape).astype(self.l_mass.dtype)

    def _windows(self, learned: np.ndarray) -> list[np.ndarray]:
        """The learned rows grouped by the window they complete or fill: the first group tops up the
        current window, each later one is a full window; all but the last complete a window, the last
        (possibly empty) one is partial."""
        rows = np.flatnonzero(learned)
        cuts = list(range(self.window_size - self.counter, len(rows) + 1, self.window_size))
        return np.split(rows, cuts)

    def score(self, score_leaves: np.ndarray, learn_leaves: np.ndarray, learned: np.ndarray) -> np.ndarray:
        """Scores of a run of rows, each scored before it is (or is not, per ``learned``) learned.

        ``score_leaves`` and ``learn_leaves`` are ``leaves`` of the rows as scored and as learned.
        Nothing changes here; ``learn`` commits the rows that were in fact learned. A window that
        completes makes its masses the reference for every row after its last learned row.
        """
        n = score_leaves.shape[1]
        scores = np.zeros(n)
        l_mass, r_mass, first = self.l_mass, self.r_mass, self.first_window
        start = 0
        for window in self._windows(learned)[:-1]:  # each completes a window
            end = int(window[-1]) + 1 if len(window) else start
            if not first:
                scores[start:end] = self._score(score_leaves[:, start:end], r_mass)
            r_mass = l_mass + self._visits(learn_leaves[:, window])
            l_mass = np.zeros_like(l_mass)
            first, start = False, end
        if not first and start < n:
            scores[start:] = self._score(score_leaves[:, start:], r_mass)
        return scores

    def learn(self, learn_leaves: np.ndarray, learned: np.ndarray) -> None:
        """Learn the rows marked ``learned``, in order (``leaves`` of the rows as learned)."""
        windows = self._windows(learned)
        for i, window in enumerate(windows):
            self.l_mass += self._visits(learn_leaves[:, window])
            self.counter += len(window)
            if i < len(windows) - 1:  # a window completed
                self.r_mass, self.l_mass = self.l_mass, np.zeros_like(self.l_mass)
                self.first_window = False
                self.counter = 0


def _node_masses(leaf_mass: np.ndarray) -> np.ndarray:
    """Every node's mass, each tree in river's heap order (shape (trees, 2**(height+1) - 1)), from the
    leaf masses. Our leaves are river's of the same depth in reverse order (the child below comes
    second here, first in river), and so is every depth; a parent sums its two children either way."""
    depths = [leaf_mass[:, ::-1]]
    while depths[0].shape[1] > 1:
        depths.insert(0, depths[0].reshape(leaf_mass.shape[0], -1, 2).sum(axis=2, dtype=leaf_mass.dtype))
    return np.concatenate(depths, axis=1)


@functools.cache
def _depth_weights(n_trees: int, height: int) -> np.ndarray:
    """2**depth of every node (0 for the unused nodes below ``n_trees``)."""
    weight = np.zeros(n_trees << (height + 1))
    for d in range(height + 1):
        weight[n_trees << d:n_trees << (d + 1)] = 2.0**d
    weight.flags.writeable = False
    return weight


@functools.cache
def _grown(n_features: int, n_trees: int, height: int, limit: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split feature and split value of every inner node (indexed by node; nodes below ``n_trees`` are
    unused), grown by river and shared (read-only) by every model with the same shape and seed: growing
    costs ~80 ms, and a plant has many machines. Features are ``intp`` so ``take`` needs no conversion."""
    feature = np.zeros(n_trees << height, dtype=np.intp)
    split = np.zeros(n_trees << height, dtype=np.float64)
    rng = random.Random(seed)
    for t in range(n_trees):
        # river passes the sorted features' limits; our features are already sorted by name
        root = make_padded_tree(limits={i: (-limit, limit) for i in range(n_features)}, height=height,
                                padding=PADDING, rng=rng, r_mass=0, l_mass=0)
        stack = [(root, n_trees + t)]
        while stack:
            node, h = stack.pop()
            if isinstance(node, PaddedBranch):
                feature[h], split[h] = node.feature, node.threshold
                stack.append((node.children[0], 2 * h + 1))  # river's left: value < threshold
                stack.append((node.children[1], 2 * h))
    feature.flags.writeable = split.flags.writeable = False
    return feature, split
