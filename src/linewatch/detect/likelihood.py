"""The anomaly likelihood: how unusual a model's recent scores are, given its own history of scores.

A model's score says how far a reading is from the model's normal. A machine's normal can move
(a persistent level shift, a new material), and then its score stays high for a long time: one alert
for an operator to judge, but a stream of detections for a benchmark that counts each flagged row.
The anomaly likelihood of Ahmad, Lavin, Purdy and Agha (2017, "Unsupervised real-time anomaly detection
for streaming data", Neurocomputing 262, 134-147, section 4.3) answers a different question: is what the
model says now unusual *for this model*? It keeps the distribution of the model's recent raw scores
(a long window), averages the newest few (a short window), and reports one minus the Gaussian tail
probability of that average. A sudden change of the score stands out; a score that stays high becomes
the new usual and the likelihood falls back.

Here the raw score is the model's exceedance of its own threshold, ``min(1, max(0, score - 1))``: 0
while the model sees nothing and 1 at twice its threshold, the same [0, 1] range as the HTM anomaly
score the method was designed for. Written from the paper; the constants are the paper's (a short
window of 10, floors of 0.03 on the mean and 0.0003 on the variance of the averaged scores so that a
quiet model's slightest blip is not a certainty, a "red zone" of 1 - 1e-5 in which only the first of
consecutive rows keeps its likelihood).

Used by the NAB harness (``evaluate/detector.py``), which sweeps a threshold over per-row scores.
"""

from __future__ import annotations

import math

import numpy as np

SHORT_WINDOW = 10  # raw scores averaged
HISTORY = 8640  # raw scores the distribution is estimated from (the paper's: a month of 5-minute rows)
LEARNING = 300  # rows of raw scores before any likelihood is reported (0.5 until then)
REESTIMATE = 100  # rows between two estimates of the distribution
MEAN_FLOOR, VARIANCE_FLOOR = 0.03, 0.0003
RED_ZONE, YELLOW_ZONE = 1.0 - 1e-5, 1.0 - 1e-3


def exceedance(score: np.ndarray) -> np.ndarray:
    """A model's score (1 = its threshold) as a raw score in [0, 1]: how far past its threshold it is."""
    return np.clip(np.asarray(score, dtype=float) - 1.0, 0.0, 1.0)


def likelihood(raw: np.ndarray) -> np.ndarray:
    """Per row, the likelihood that the recent raw scores are unusual. NaN raw scores (the model was
    not judging yet: warming up, calibrating) are skipped; their rows get 0.5, as do the first LEARNING."""
    raw = np.asarray(raw, dtype=float)
    n = len(raw)
    out = np.full(n, 0.5)
    judged = np.flatnonzero(~np.isnan(raw))
    if len(judged) <= LEARNING:
        return out
    values = raw[judged]
    sums = np.concatenate([[0.0], np.cumsum(values)])
    counts = np.minimum(np.arange(1, len(values) + 1), SHORT_WINDOW)
    average = (sums[1:] - sums[np.maximum(np.arange(1, len(values) + 1) - SHORT_WINDOW, 0)]) / counts
    result = np.full(len(values), 0.5)
    for start in range(LEARNING, len(values), REESTIMATE):
        history = average[max(0, start - HISTORY):start]
        mean = max(float(history.mean()), MEAN_FLOOR)
        std = math.sqrt(max(float(history.var()), VARIANCE_FLOOR))
        chunk = average[start:start + REESTIMATE]
        z = np.abs(chunk - mean) / std
        result[start:start + REESTIMATE] = 1.0 - 0.5 * _erfc(z / math.sqrt(2.0))
    out[judged] = _filtered(result)
    return out


def log_likelihood(likelihood_: np.ndarray) -> np.ndarray:
    """The likelihood on a log scale in [0, 1] (0.5 at 1 - 1e-5), so a threshold sweep can tell
    0.99999 from 0.9999999 (as NAB's HTM detector reports it)."""
    return np.log(1.0000000001 - np.asarray(likelihood_, dtype=float)) / math.log(1.0 - 0.9999999999)


def _filtered(values: np.ndarray) -> np.ndarray:
    """In a run of red-zone likelihoods only the first keeps its value; the rest count as yellow."""
    out = values.copy()
    red = values >= RED_ZONE
    follow = red[1:] & red[:-1]
    out[1:][follow] = YELLOW_ZONE
    return out


def _erfc(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erfc, otypes=[float])(x)
