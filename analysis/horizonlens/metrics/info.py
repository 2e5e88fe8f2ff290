"""Small information-theoretic helpers shared by the routing metrics (numpy only)."""

from __future__ import annotations

import numpy as np


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of a count or probability vector; 0 for an empty one."""
    p = np.asarray(counts, dtype=np.float64).ravel()
    total = p.sum()
    if total <= 0:
        return 0.0
    p = p[p > 0] / total
    return float(-(p * np.log(p)).sum())


def mutual_information(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """I(A; B) in nats from paired discrete labels (plug-in estimate)."""
    a = np.asarray(labels_a)
    b = np.asarray(labels_b)
    if a.size == 0:
        return 0.0
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1)
    return entropy(joint.sum(1)) + entropy(joint.sum(0)) - entropy(joint)


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance (sqrt of the divergence, base 2, in [0, 1]) between two distributions."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x: np.ndarray, y: np.ndarray) -> float:
        mask = x > 0
        return float((x[mask] * np.log2(x[mask] / y[mask])).sum())

    return float(np.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2)))
