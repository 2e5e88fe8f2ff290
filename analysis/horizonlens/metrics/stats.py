"""Statistics primitives used by the metrics: intervals, Kaplan–Meier, logistic fit, pass^k."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

Z95 = 1.959963984540054


def wilson(successes: np.ndarray | float, n: np.ndarray | float, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion (defined for 0 and n successes)."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, k / n, np.nan)
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def kaplan_meier(durations: np.ndarray, events: np.ndarray, counts: np.ndarray | None = None,
                 z: float = Z95) -> pd.DataFrame:
    """Kaplan–Meier survival with Greenwood log(-log) 95% bands (as lifelines computes them).

    durations: time of the event or of censoring (here: the index of the check, 1-based);
    events: 1 if the event (a failed check) happened at that time, 0 if censored;
    counts: how many subjects each (duration, event) row stands for (default 1 each), so that a corpus can be
    passed as a few hundred (time, event, count) rows instead of one row per trajectory.
    Returns one row per distinct time with at_risk, events, censored, survival, lower, upper, hazard.
    """
    d = np.asarray(durations, dtype=float)
    e = np.asarray(events, dtype=int)
    w = np.ones(d.size, dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
    if d.size == 0:
        return pd.DataFrame(columns=["t", "at_risk", "events", "censored", "survival", "lower", "upper", "hazard"])
    times = np.unique(d)
    rows = []
    surv, green = 1.0, 0.0
    for t in times:
        at_risk = int(w[d >= t].sum())
        ev = int(w[(d == t) & (e == 1)].sum())
        cens = int(w[(d == t) & (e == 0)].sum())
        hazard = ev / at_risk if at_risk else 0.0
        surv *= 1 - hazard
        if at_risk > ev:
            green += ev / (at_risk * (at_risk - ev))
        if 0 < surv < 1 and green > 0:
            # log(-log S) transform keeps the band inside [0, 1]
            se = math.sqrt(green) / abs(math.log(surv))
            lower, upper = surv ** math.exp(z * se), surv ** math.exp(-z * se)
        else:
            lower = upper = surv
        rows.append((t, at_risk, ev, cens, surv, lower, upper, hazard))
    return pd.DataFrame(rows, columns=["t", "at_risk", "events", "censored", "survival", "lower", "upper", "hazard"])


@dataclass
class LogisticFit:
    """A fitted logistic curve P(y = 1 | x) = 1 / (1 + exp(−(intercept + slope·x)))."""

    intercept: float
    slope: float
    converged: bool  # False when there is nothing to fit or Newton–Raphson diverged

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The fitted probability at each x."""
        return 1 / (1 + np.exp(-(self.intercept + self.slope * np.asarray(x, dtype=float))))

    def x_at(self, q: float) -> float | None:
        """The x where the fitted probability equals q (METR's get_x_for_quantile)."""
        if self.slope == 0 or not self.converged:
            return None
        return (math.log(q / (1 - q)) - self.intercept) / self.slope


def fit_logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, iters: int = 50,
                 ridge: float = 1e-6) -> LogisticFit:
    """Maximum-likelihood logistic regression y ~ a + b x by Newton–Raphson (IRLS).

    weights: how many observations each (x, y) row stands for (default 1 each); rows of weight 0 drop out.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    x, y, n = x[n > 0], y[n > 0], n[n > 0]
    if x.size == 0 or n.sum() < 2 or y.min() == y.max() or x.min() == x.max():
        return LogisticFit(0.0, 0.0, False)  # all successes, all failures or one length: no slope to fit
    X = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-X @ beta))
        w = n * p * (1 - p)
        hess = X.T @ (X * w[:, None]) + ridge * np.eye(2)
        step = np.linalg.solve(hess, X.T @ (n * (y - p)))
        beta += step
        if np.abs(step).max() < 1e-8:
            return LogisticFit(float(beta[0]), float(beta[1]), bool(np.isfinite(beta).all()))
    return LogisticFit(float(beta[0]), float(beta[1]), bool(np.isfinite(beta).all() and abs(beta[1]) < 1e6))


def fit_logistic_many(x: np.ndarray, y: np.ndarray, weights: np.ndarray, iters: int = 50,
                      ridge: float = 1e-6) -> list[LogisticFit]:
    """`fit_logistic` for many weightings of the same (x, y) rows at once (one row of `weights` per fit).

    Bootstrap resamples of grouped data are weightings of the same rows; their Newton–Raphson steps run side by
    side as (fits × rows) arrays, which is what makes 200 resamples of a million runs cheap.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    fits: list[LogisticFit | None] = [None] * len(w)
    # a weighting with fewer than two observations, one outcome or one length has nothing to fit
    for b, wb in enumerate(w):
        used = wb > 0
        if wb.sum() < 2 or not used.any() or y[used].min() == y[used].max() or x[used].min() == x[used].max():
            fits[b] = LogisticFit(0.0, 0.0, False)
    todo = np.array([b for b, f in enumerate(fits) if f is None], dtype=int)
    beta = np.zeros((len(todo), 2))
    active = np.ones(len(todo), dtype=bool)
    for _ in range(iters):
        if not active.any():
            break
        rows = np.flatnonzero(active)
        wb = w[todo[rows]]  # (fits, rows)
        p = 1 / (1 + np.exp(-(beta[rows, :1] + beta[rows, 1:] * x)))
        h = wb * p * (1 - p)
        g = wb * (y - p)
        hess = np.stack([np.stack([h.sum(1), (h * x).sum(1)], -1), np.stack([(h * x).sum(1), (h * x * x).sum(1)], -1)],
                        -2) + ridge * np.eye(2)
        step = np.linalg.solve(hess, np.stack([g.sum(1), (g * x).sum(1)], -1)[..., None])[..., 0]
        beta[rows] += step
        active[rows] = np.abs(step).max(1) >= 1e-8
    for i, b in enumerate(todo):
        ok = bool(np.isfinite(beta[i]).all() and (not active[i] or abs(beta[i, 1]) < 1e6))
        fits[b] = LogisticFit(float(beta[i, 0]), float(beta[i, 1]), ok)
    return [f for f in fits if f is not None]


def pass_hat_k(trials: pd.DataFrame, k_max: int | None = None) -> pd.DataFrame:
    """pass^k: mean over tasks of C(c, k) / C(n, k), the chance all k sampled trials succeed (τ-bench).

    `trials` has one row per task with columns n (trials) and c (successes), or one row per distinct (n, c)
    with the number of such tasks in `tasks`. Tasks with fewer than k trials do not count toward pass^k.
    """
    if trials.empty:
        return pd.DataFrame(columns=["k", "pass_hat_k", "tasks"])
    weights = trials["tasks"] if "tasks" in trials else pd.Series(1, index=trials.index)
    k_max = k_max or int(trials["n"].max())
    rows = []
    for k in range(1, k_max + 1):
        eligible = trials["n"] >= k
        if not eligible.any():
            continue
        vals = np.array([math.comb(int(c), k) / math.comb(int(n), k)
                         for n, c in zip(trials["n"][eligible], trials["c"][eligible], strict=True)])
        w = weights[eligible].to_numpy(dtype=float)
        rows.append((k, float(np.sum(w * vals) / np.sum(w)), int(w.sum())))
    return pd.DataFrame(rows, columns=["k", "pass_hat_k", "tasks"])


# --- paired comparisons (run sets) ----------------------------------------------------------------------------
def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair coin flips (McNemar's exact test on discordant pairs).

    With p = 1/2 the distribution is symmetric, so the p-value is twice the smaller tail (at most 1), which is
    what scipy's `binomtest(k, n).pvalue` gives. Summed in log space: exact binomial coefficients of large n
    would be numbers with tens of thousands of digits.
    """
    if n <= 0:
        return 1.0
    m = min(k, n - k)
    i = np.arange(m, dtype=float)
    log_terms = np.concatenate([[0.0], np.cumsum(np.log((n - i) / (i + 1)))])  # log C(n, 0..m)
    top = log_terms.max()
    tail = math.exp(top - n * math.log(2)) * float(np.exp(log_terms - top).sum())
    return min(1.0, 2 * tail)


def logrank(durations: np.ndarray, events: np.ndarray, groups: np.ndarray,
            counts: np.ndarray | None = None) -> tuple[float, float]:
    """The log-rank test of two survival curves: (chi-square statistic with 1 df, p-value).

    durations: time of the event or of censoring; events: 1 if the event happened then; groups: 0 or 1;
    counts: how many subjects each row stands for (default 1). The variance is the hypergeometric one with
    ties, as lifelines' `logrank_test` computes it. (nan, nan) when no event happened or a group is empty.
    """
    d = np.asarray(durations, dtype=float)
    e = np.asarray(events, dtype=int) == 1
    g = np.asarray(groups, dtype=int) == 1
    w = np.ones(d.size) if counts is None else np.asarray(counts, dtype=float)
    if not e.any() or not g.any() or g.all() or w[g].sum() == 0 or w[~g].sum() == 0:
        return math.nan, math.nan
    times = np.unique(d[e])
    order = np.argsort(d, kind="stable")
    d_sorted = d[order]

    def at_risk(mask: np.ndarray) -> np.ndarray:
        # subjects with duration >= t: the total minus those that ended before t
        ended = np.concatenate([[0.0], np.cumsum(w[order] * mask[order])])
        return ended[-1] - ended[np.searchsorted(d_sorted, times, side="left")]

    def events_at(mask: np.ndarray) -> np.ndarray:
        hit = e & mask
        return np.bincount(np.searchsorted(times, d[hit]), weights=w[hit], minlength=times.size)

    n1, n = at_risk(g), at_risk(np.ones_like(g))
    o1, total = events_at(g), events_at(np.ones_like(g))
    share = np.divide(n1, n, out=np.zeros_like(n1), where=n > 0)
    expected = total * share
    variance = np.where(n > 1, total * share * (1 - share) * (n - total) / np.maximum(n - 1, 1), 0.0)
    v = float(variance.sum())
    if v <= 0:
        return math.nan, math.nan
    stat = float((o1 - expected).sum() ** 2 / v)
    return stat, math.erfc(math.sqrt(stat / 2))  # the chi-square(1) tail


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: not tested, left out of the family)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None and np.isfinite(p))
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    m = len(tested)
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, tasks: np.ndarray, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval of mean(b − a) over tasks, resampling tasks with replacement.

    Rows are cells of interchangeable tasks: `a` and `b` are the per-task values of a cell and `tasks` how many
    tasks share them. Resampling tasks is then drawing cell counts from a multinomial, which costs the same
    for a hundred tasks or a million. (None, None) without tasks.
    """
    w = np.asarray(tasks, dtype=float)
    total = int(w.sum())
    if total == 0 or n_boot <= 0:
        return None, None
    delta = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    draws = np.random.default_rng(seed).multinomial(total, w / total, size=n_boot)
    diffs = draws @ delta / total
    tail = (1 - level) / 2 * 100
    return float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))
