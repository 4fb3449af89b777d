"""river's Half-Space Trees as arrays, so a whole batch of readings is scored in a few numpy calls.

The trees are grown by river itself (``river.tree.padded.make_padded_tree`` with the same random
generator and limits as ``river.anomaly.HalfSpaceTrees``), then laid out as complete binary trees in
heap order: node ``i`` has children ``2i+1`` (value below the split) and ``2i+2``. What river keeps
on node objects (split feature, split value, the masses of the reference and the latest window)
becomes four arrays: the trees (shared by machines with the same seed) and about 50 kB of masses
per machine, instead of river's ~3 MB of Python objects.

A reading's score depends only on the reference masses (``r``), which change only when a window of
``window_size`` learned readings completes. So a batch splits into at most a few spans with constant
``r``; within a span every reading's path and score are computed at once. Masses are whole numbers
and the score is a sum of mass * 2**depth, which floats hold exactly, so the scores equal river's to
the last bit once the paths agree.
"""

from __future__ import annotations

import functools
import random

import numpy as np
from river.tree.padded import PaddedBranch, make_padded_tree

PADDING = 0.15  # river's split padding
SIZE_LIMIT_FRACTION = 0.1  # river stops scoring below 0.1 * window_size (from the original paper)


class HalfSpaceForest:
    """The trees, the masses and the window counter of one machine's Half-Space Trees."""

    def __init__(self, n_features: int, n_trees: int, height: int, window_size: int, limit: float, seed: int):
        self.n_trees, self.height, self.window_size = n_trees, height, window_size
        n_nodes = 2 ** (height + 1) - 1
        self._shape = (n_features, n_trees, height, limit, seed)
        self.feature, self.split = _grown(*self._shape)
        # a mass never exceeds window_size: 16-bit counters halve the memory of 1,000 machines' models
        mass_type = np.int16 if window_size < 2**15 else np.int32
        self.l_mass = np.zeros((n_trees, n_nodes), dtype=mass_type)
        self.r_mass = np.zeros((n_trees, n_nodes), dtype=mass_type)
        self.counter = 0
        self.first_window = True
        self.size_limit = SIZE_LIMIT_FRACTION * window_size
        self.max_score = n_trees * window_size * (2 ** (height + 1) - 1)
        self._depth_weight = (2 ** np.arange(height + 1, dtype=np.int64))[None, :, None]

    def __getstate__(self) -> dict:
        """Checkpoints carry the masses; the trees are grown again from their seed (same trees)."""
        state = self.__dict__.copy()
        del state["feature"], state["split"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.feature, self.split = _grown(*self._shape)

    def paths(self, x: np.ndarray) -> np.ndarray:
        """Node index at each depth for each tree and row: shape (trees, height+1, rows).

        ``x`` holds scaled readings, one row each, features in the forest's order. A value equal to the
        split, or NaN, goes right, as in river (``value < threshold`` goes left). Indices are into the
        flattened mass arrays (tree * nodes + heap index), so scoring and learning need no more arithmetic.
        """
        n_rows, n_features = x.shape
        values = np.ascontiguousarray(x).ravel()
        row_start = np.arange(0, n_rows * n_features, n_features, dtype=np.intp)[None, :]
        inner_start = (np.arange(self.n_trees, dtype=np.intp) * self.feature.shape[1])[:, None]
        node = np.zeros((self.n_trees, n_rows), dtype=np.intp)
        out = np.empty((self.n_trees, self.height + 1, n_rows), dtype=np.intp)
        out[:, 0] = 0
        feature, split = self.feature.ravel(), self.split.ravel()
        for depth in range(self.height):
            at = node + inner_start
            below = values.take(row_start + feature.take(at)) < split.take(at)
            node = 2 * node + 2
            node -= below
            out[:, depth + 1] = node
        out += (np.arange(self.n_trees, dtype=np.intp) * self.l_mass.shape[1])[:, None, None]
        return out

    def _score(self, paths: np.ndarray, r_mass: np.ndarray) -> np.ndarray:
        """river's score: mass * 2**depth summed down each path, stopping after the first node whose
        reference mass is below the size limit; 1 - total / largest possible total."""
        mass = r_mass.ravel().take(paths)  # (trees, depth, rows)
        contribution = mass * self._depth_weight
        # A child's mass never exceeds its parent's (every reading that passed the child passed the
        # parent), so a node is reached exactly when its parent's mass is at or above the limit.
        contribution[:, 1:] *= mass[:, :-1] >= self.size_limit
        total = contribution.sum(axis=(0, 1))
        return 1 - total.astype(np.float64) / self.max_score

    def _visits(self, paths: np.ndarray) -> np.ndarray:
        """How often each node was passed by these rows' paths, per tree."""
        shape = self.l_mass.shape
        return np.bincount(paths.ravel(), minlength=shape[0] * shape[1]).reshape(shape).astype(self.l_mass.dtype)

    def _windows(self, learned: np.ndarray) -> list[np.ndarray]:
        """The learned rows grouped by the window they complete or fill: the first group tops up the
        current window, each later one is a full window; all but the last complete a window, the last
        (possibly empty) one is partial."""
        rows = np.flatnonzero(learned)
        cuts = list(range(self.window_size - self.counter, len(rows) + 1, self.window_size))
        return np.split(rows, cuts)

    def score(self, score_paths: np.ndarray, learn_paths: np.ndarray, learned: np.ndarray) -> np.ndarray:
        """Scores of a run of rows, each scored before it is (or is not, per ``learned``) learned.

        Nothing changes here; ``learn`` commits the rows that were in fact learned. A window that
        completes makes its masses the reference for every row after its last learned row.
        """
        n = score_paths.shape[2]
        scores = np.zeros(n)
        l_mass, r_mass, first = self.l_mass, self.r_mass, self.first_window
        start = 0
        for window in self._windows(learned)[:-1]:  # each completes a window
            end = int(window[-1]) + 1 if len(window) else start
            if not first:
                scores[start:end] = self._score(score_paths[:, :, start:end], r_mass)
            r_mass = l_mass + self._visits(learn_paths[:, :, window])
            l_mass = np.zeros_like(l_mass)
            first, start = False, end
        if not first and start < n:
            scores[start:] = self._score(score_paths[:, :, start:], r_mass)
        return scores

    def learn(self, learn_paths: np.ndarray, learned: np.ndarray) -> None:
        """Learn the rows marked ``learned``, in order (paths from ``paths`` of the rows as learned)."""
        windows = self._windows(learned)
        for i, window in enumerate(windows):
            self.l_mass += self._visits(learn_paths[:, :, window])
            self.counter += len(window)
            if i < len(windows) - 1:  # a window completed
                self.r_mass, self.l_mass = self.l_mass, np.zeros_like(self.l_mass)
                self.first_window = False
                self.counter = 0


@functools.cache
def _grown(n_features: int, n_trees: int, height: int, limit: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split feature and split value of every inner node, grown by river and shared (read-only) by
    every model with the same shape and seed: growing costs ~80 ms, and a plant has many machines."""
    n_inner = 2**height - 1
    feature = np.zeros((n_trees, n_inner), dtype=np.int8 if n_features < 128 else np.int32)
    split = np.zeros((n_trees, n_inner), dtype=np.float64)
    rng = random.Random(seed)
    for t in range(n_trees):
        # river passes the sorted features' limits; our features are already sorted by name
        root = make_padded_tree(limits={i: (-limit, limit) for i in range(n_features)}, height=height,
                                padding=PADDING, rng=rng, r_mass=0, l_mass=0)
        stack = [(root, 0)]
        while stack:
            node, i = stack.pop()
            if isinstance(node, PaddedBranch):
                feature[t, i], split[t, i] = node.feature, node.threshold
                stack.append((node.children[0], 2 * i + 1))
                stack.append((node.children[1], 2 * i + 2))
    feature.flags.writeable = split.flags.writeable = False
    return feature, split
