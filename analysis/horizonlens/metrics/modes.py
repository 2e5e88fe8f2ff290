"""Failure modes: the failed steps of a selection clustered by what they say, without a model or an LLM.

Each failed step becomes one normalised text (tool calls, observations, check detail; values, ids and numbers
masked), represented by TF-IDF over words and character n-grams, reduced by a truncated SVD and clustered by
HDBSCAN on a seeded sample of at most `fit_sample` steps; every failed step is then assigned to the nearest
mode or left unclustered (-1). Modes are labelled by class-based TF-IDF. docs/metrics.md ("Failure modes")
says what each figure of a mode means.

Bounded in time and memory at 10^5 failed steps: the texts are built and masked inside DuckDB (`mode_text_sql`),
identical normalised texts are represented once, and character n-grams are cut once per distinct word
(`char_tfidf`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from horizonlens.errors import StoreError
from horizonlens.query.store import CorpusStore
from horizonlens.storage.quoting import sql_string

FIELD_CHARS = 300  # characters of each field (observation, check detail, arguments) a text keeps
SVD_DIMS = 48
CHAR_FEATURES = 50_000  # character n-grams kept (the most frequent in the fitting sample)
ASSIGN_QUANTILE = 0.05  # a step joins a mode if it is as close to its centroid as 95% of the mode's fitted members
UNCLUSTERED = -1
FACETS = ("agent", "teacher", "domain")
COLUMNS = ["mode", "label", "size", "share", "terms", "example", "example_trajectory", "example_step",
           "median_position", "next_check_passed", "run_succeeded"]

@dataclass(frozen=True)
class ModeConfig:
    """How modes are fitted; every field is part of the cache key of a result."""

    fit_sample: int = 5_000  # failed steps the vocabulary, SVD and clusters are fitted on
    min_cluster_size: int | None = None  # HDBSCAN's; None: 1% of the fitted sample, at least 10
    seed: int = 0
    examples: int = 5  # example steps kept per mode
    revision: int = 2  # bump when the method changes meaning

    def key(self) -> str:
        """A short hash of the configuration."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


# What `normalise_sql` masks, as RE2 patterns (DuckDB's regex engine: no look-around, so a single-quoted value
# takes its delimiting characters along and gives them back; one pass misses the second of two adjacent values,
# so that replacement runs twice). Applied in this order, on ASCII word characters.
_MASKS = (
    (r'"[^"\n]{0,200}"', " qval "),  # double-quoted values
    (r"(^|[^\w])'[^'\n]{0,200}'([^\w]|$)", r"\1 qval \2"),  # single-quoted values, not apostrophes in words
    (r"(^|[^\w])'[^'\n]{0,200}'([^\w]|$)", r"\1 qval \2"),
    (r"[-+]?\b\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?\b", " num "),  # whole numbers (3.5e3 too, not HL401)
    (r"\b[\w-]*(?:\d[\w-]*[A-Za-z]|[A-Za-z][\w-]*\d)[\w-]*\b", " idval "),  # words mixing letters and digits
    (r"\d+", " num "),  # digits left inside other words
    (r"\s+", " "),
)
# JSON value types DuckDB reports that Python reads as numbers (a boolean is an int in Python)
_NUMERIC_JSON = "('BIGINT', 'UBIGINT', 'HUGEINT', 'DOUBLE', 'BOOLEAN')"


def normalise_sql(expr: str) -> str:
    """SQL that masks what differs between instances of one mistake in `expr` (then one space, lower case).

    Quoted values become `qval`, numbers `num`, ids (words mixing letters and digits) `idval`.
    """
    for pattern, replacement in _MASKS:
        expr = f"regexp_replace({expr}, {sql_string(pattern)}, {sql_string(replacement)}, 'g')"
    return f"lower(trim({expr}))"


def _arguments_sql(arguments: str) -> str:
    """A tool call's arguments: a JSON object as its keys with masked values (`path=qval n=num`), else the text."""
    entries = f"map_entries(TRY_CAST(json({arguments}) AS MAP(VARCHAR, JSON)))"
    masked = (f"array_to_string(list_transform({entries}, lambda e: e.key || '=' || CASE WHEN json_type(e.value) IN "
              f"{_NUMERIC_JSON} THEN 'num' ELSE 'qval' END), ' ')")
    return (f"CASE WHEN json_valid({arguments}) AND json_type({arguments}) = 'OBJECT' "
            f"THEN coalesce({masked}, left({arguments}, {FIELD_CHARS})) ELSE left({arguments}, {FIELD_CHARS}) END")


def mode_text_sql(alias: str) -> str:
    """SQL for the normalised text of step `alias`: its calls, observations and check detail (module docstring)."""
    calls = (f"array_to_string(list_transform({alias}.tool_calls, lambda c: 'tool ' || coalesce(c.name, '') || ' ' "
             f"|| coalesce({_arguments_sql('c.arguments')}, '')), ' ')")
    obs = (f"array_to_string(list_transform({alias}.observations, lambda o: left(coalesce(o.content, ''), "
           f"{FIELD_CHARS})), ' ')")
    detail = f"left(coalesce({alias}.check_detail, ''), {FIELD_CHARS})"
    return normalise_sql(f"coalesce({calls}, '') || ' | ' || coalesce({obs}, '') || ' | ' || {detail}")


def tools_sql(alias: str) -> str:
    """SQL for the names of the tools step `alias` calls, each once, in call order, joined by ', '."""
    names = f"list_transform({alias}.tool_calls, lambda c: coalesce(c.name, ''))"
    return f"coalesce(array_to_string(list_filter({names}, lambda x, i: list_position({names}, x) = i), ', '), '')"


_FAILED_SQL = """
  WITH checked AS (
    SELECT trajectory_id, step, check_passed,
           lead(check_passed) OVER (PARTITION BY trajectory_id ORDER BY step) AS next_check_passed
    FROM steps WHERE check_passed IS NOT NULL{scope})
  SELECT s.trajectory_id, s.step, s.error_label, {text} AS text, {tools} AS tools, c.next_check_passed,
         t.agent, t.teacher, t.domain, t.outcome, t.n_steps
  FROM checked c JOIN steps s ON s.trajectory_id = c.trajectory_id AND s.step = c.step
  JOIN trajectories t ON t.trajectory_id = c.trajectory_id{keys}
  WHERE c.check_passed = false AND s.check_passed = false
  ORDER BY s.trajectory_id, s.step"""


def failed_steps(store: CorpusStore, keys: pa.Table | None = None) -> pd.DataFrame:
    """The failed steps (all, or those whose (trajectory_id, step) is in `keys`) with their run's facets and text.

    The text is built and normalised inside DuckDB, so no step's calls or observations are ever Python objects.
    """
    scope = " AND trajectory_id IN (SELECT trajectory_id FROM mode_keys)" if keys is not None else ""
    join = " JOIN mode_keys k ON k.trajectory_id = s.trajectory_id AND k.step = s.step" if keys is not None else ""
    cur = store.cursor()
    try:
        if keys is not None:
            cur.register("mode_keys", keys.select(["trajectory_id", "step"]))
        frame = cur.sql(_FAILED_SQL.format(scope=scope, keys=join, text=mode_text_sql("s"),
                                           tools=tools_sql("s"))).df()
    except duckdb.Error as exc:
        raise StoreError(f"cannot read the failed steps ({exc})") from None
    finally:
        cur.close()
    frame["position"] = frame["step"] / frame["n_steps"].clip(lower=1)
    return frame


@dataclass
class Fitted:
    """A fitted mode model: what every failed step was assigned to, and how the fit was bounded."""

    assignment: np.ndarray  # per failed step: its mode (UNCLUSTERED: none)
    vectors: np.ndarray  # per distinct text: its unit-length SVD vector
    text_index: np.ndarray  # per failed step: the row of its text in `vectors`
    centroids: np.ndarray  # per mode: unit-length centroid
    fitted_steps: int
    distinct_texts: int


def char_tfidf(texts: list[str], fit_rows: np.ndarray, max_features: int = CHAR_FEATURES) -> Any:
    """TF-IDF of character 3-5 grams within words (scikit-learn's `char_wb`), fitted on `texts[fit_rows]`.

    The same matrix as `TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True,
    max_features=...)` fitted on those rows, up to column order and ties at the max_features cut.

    A word's n-grams do not depend on its neighbours, so each distinct word is cut into n-grams once and a
    text's counts are its word counts times the words' n-gram counts (one sparse product) instead of a Python
    loop over every character of every text.
    """
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

    tokens = CountVectorizer(token_pattern=r"(?u)\S+", lowercase=False, dtype=np.float32)  # words as char_wb cuts
    per_text = tokens.fit_transform(texts).tocsr()  # (texts, words)
    grams = CountVectorizer(analyzer="char_wb", ngram_range=(3, 5), lowercase=False, dtype=np.float32)
    per_word = grams.fit_transform(tokens.get_feature_names_out().tolist()).tocsc()  # (words, n-grams)
    fitted = per_text[fit_rows] @ per_word
    seen = np.flatnonzero(np.asarray((fitted > 0).sum(0)).ravel())  # the vocabulary: n-grams of the fitting rows
    if len(seen) > max_features:  # the most frequent ones, as max_features keeps
        frequency = np.asarray(fitted[:, seen].sum(0)).ravel()
        seen = np.sort(seen[np.argsort(-frequency, kind="stable")[:max_features]])
    weights = TfidfTransformer(sublinear_tf=True).fit(fitted[:, seen])
    return weights.transform(per_text @ per_word[:, seen]).astype(np.float32)


def fit_modes(texts: list[str], config: ModeConfig = ModeConfig()) -> Fitted:
    """Cluster texts (one per failed step) into modes: fit on a sample, assign every step (module docstring)."""
    from scipy.sparse import hstack
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    n = len(texts)
    distinct, text_index = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    rng = np.random.default_rng(config.seed)
    sample = np.sort(rng.choice(n, size=config.fit_sample, replace=False)) if n > config.fit_sample else np.arange(n)
    fit_rows = text_index[sample]  # distinct-text rows of the sampled steps (duplicates kept: density counts)
    fit_distinct = np.unique(fit_rows)
    all_texts = distinct.tolist()
    words = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=1, sublinear_tf=True, dtype=np.float32)
    words.fit(distinct[fit_distinct].tolist())
    matrix = hstack([words.transform(all_texts), char_tfidf(all_texts, fit_distinct)]).tocsr()
    dims = max(1, min(SVD_DIMS, matrix.shape[1] - 1, len(fit_distinct) - 1))
    if dims >= 2:
        svd = TruncatedSVD(n_components=dims, random_state=config.seed).fit(matrix[fit_distinct])
        vectors = normalize(svd.transform(matrix)).astype(np.float32)
    else:
        vectors = normalize(matrix.toarray()).astype(np.float32)
    min_size = config.min_cluster_size or max(10, len(sample) // 100)
    points = vectors[fit_rows]
    if len(sample) < 2 * min_size or len(fit_distinct) < 2:
        labels = np.zeros(len(sample), dtype=int)  # too few to split: one mode
    else:
        labels = HDBSCAN(min_cluster_size=min_size, min_samples=min(min_size, 10), copy=True).fit_predict(points)
    modes = sorted(set(labels.tolist()) - {UNCLUSTERED})
    if not modes:
        labels, modes = np.zeros(len(sample), dtype=int), [0]
    centroids = normalize(np.stack([points[labels == m].mean(0) for m in modes])).astype(np.float32)
    floors = np.array([np.quantile(points[labels == m] @ centroids[i], ASSIGN_QUANTILE) for i, m in enumerate(modes)])
    sims = vectors @ centroids.T  # (distinct texts, modes)
    best = sims.argmax(1)
    near = sims[np.arange(len(best)), best] >= floors[best] - 1e-6
    per_text = np.where(near, best, UNCLUSTERED)
    return Fitted(assignment=per_text[text_index], vectors=vectors, text_index=text_index, centroids=centroids,
                  fitted_steps=len(sample), distinct_texts=len(distinct))


_PLACEHOLDERS = frozenset({"qval", "idval", "num", "tool", "the", "to", "of", "on", "in", "a", "an", "and", "or",
                           "is", "at", "from", "by", "for", "with", "was", "has", "not", "be", "it", "as", "if", "do",
                           "so", "we", "me", "my", "up", "us"})
LABEL_TERMS = 3  # terms in a mode's label
LABEL_STEPS = 2_000  # steps of each mode its distinguishing terms are counted on (a seeded sample)


def distinguishing_terms(texts: list[str], modes: np.ndarray, top: int = 8) -> dict[int, list[str]]:
    """Per mode, the words that set it apart from the other modes (class-based TF-IDF, BERTopic's c-TF-IDF).

    Each mode is one document (its steps' texts); a word's weight in a mode is its frequency there times
    log(1 + A / f), A the mean words per mode and f the word's frequency over all modes. Words of two letters
    count (units such as kg and km tell modes apart); placeholders left by `normalise_sql` and stop words do not.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    keep = modes != UNCLUSTERED
    if not keep.any():
        return {}
    distinct, index = np.unique(np.asarray(texts, dtype=object)[keep], return_inverse=True)
    vec = CountVectorizer(token_pattern=r"(?u)\b[a-z][a-z_]*\b", stop_words=list(_PLACEHOLDERS))
    try:
        counts = vec.fit_transform(distinct.tolist())
    except ValueError:  # no word at all (texts of numbers only)
        return {int(m): [] for m in np.unique(modes[keep])}
    ids, inverse = np.unique(modes[keep], return_inverse=True)
    from scipy.sparse import csr_matrix

    onehot = csr_matrix((np.ones(len(index)), (inverse, index)), shape=(len(ids), len(distinct)))
    per_mode = np.asarray((onehot @ counts).todense(), dtype=np.float64)  # (modes, words)
    tf = per_mode / np.maximum(per_mode.sum(1, keepdims=True), 1)
    avg = per_mode.sum() / len(ids)
    weight = tf * np.log1p(avg / np.maximum(per_mode.sum(0), 1))
    words = vec.get_feature_names_out()
    return {int(m): [str(words[j]) for j in np.argsort(-weight[i])[:top] if weight[i, j] > 0]
            for i, m in enumerate(ids)}


def label_terms(terms: dict[int, list[str]], order: list[int]) -> dict[int, list[str]]:
    """The LABEL_TERMS terms that name each mode, so that no two modes read alike.

    Modes are named in `order` (largest first) by their top terms; a mode whose top terms repeat an earlier
    mode's label swaps its last one for its best term that the earlier mode does not rank.
    """
    named: dict[frozenset[str], int] = {}
    out: dict[int, list[str]] = {}
    for m in order:
        words = terms.get(m, [])
        chosen = words[:LABEL_TERMS]
        earlier = named.get(frozenset(chosen))
        if earlier is not None:
            other = set(terms.get(earlier, []))
            extra = next((w for w in words[LABEL_TERMS:] + words if w not in other), None)
            if extra is not None and extra not in chosen:
                chosen = chosen[:LABEL_TERMS - 1] + [extra]
        named.setdefault(frozenset(chosen), m)
        out[m] = chosen
    return out


RESULT_TABLES = ("modes", "members", "facets", "positions", "examples")
POSITION_BINS = 10


@dataclass
class ModeResult:
    """Failure modes of a selection: one table per view of them, and how they were computed (`note`)."""

    modes: pd.DataFrame  # one row per mode (UNCLUSTERED last): COLUMNS
    members: pd.DataFrame  # trajectory_id, step, mode: every failed step of the selection
    facets: pd.DataFrame  # mode, facet, value, steps, share (of the mode), lift (share / share among all)
    positions: pd.DataFrame  # mode, bin (tenth of the run), steps
    examples: pd.DataFrame  # mode, rank, trajectory_id, step, tools, text, agent, domain
    note: dict[str, Any]  # failed_steps, fitted_steps, distinct_texts, sampled, where, config

    def labelled_members(self) -> pd.DataFrame:
        """Every failed step of the selection with its mode's label: trajectory_id, step, mode, label."""
        return self.members.merge(self.modes[["mode", "label"]], on="mode", how="left")

    def to_json(self) -> dict[str, Any]:
        """`horizonlens modes --json`: every mode with its label, size and members [[trajectory_id, step], ...]."""
        members = {int(str(m)): g[["trajectory_id", "step"]].to_numpy().tolist()
                   for m, g in self.members.groupby("mode", sort=False)}
        modes = []
        for r in self.modes.to_dict("records"):
            m = int(r["mode"])
            modes.append({"mode": m, "label": r["label"], "size": int(r["size"]), "share": float(r["share"]),
                          "terms": r["terms"].split(", ") if r["terms"] else [], "example": r["example"],
                          "median_position": _num(r["median_position"]),
                          "next_check_passed": _num(r["next_check_passed"]), "run_succeeded": _num(r["run_succeeded"]),
                          "members": [[str(t), int(s)] for t, s in members.get(m, [])]})
        return {"modes": modes, "note": self.note}


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)


def select_failed(store: CorpusStore, where: str | None) -> pa.Table | None:
    """The (trajectory_id, step) of the failed steps a user predicate selects, through the SQL console's gate.

    The predicate is SQL over `s` (the step) and `t` (its trajectory), e.g. `t.domain = 'search'`; it runs as
    one read-only, bounded SELECT (query/console.py). None: no predicate, every failed step.
    """
    if where is None or not where.strip():
        return None
    from horizonlens.query.console import run_sql

    sql = ("SELECT s.trajectory_id, s.step FROM steps s JOIN trajectories t ON t.trajectory_id = s.trajectory_id "
           f"WHERE s.check_passed = false AND ({where})")
    result = run_sql(store, sql, row_cap=MAX_SELECTED, timeout_s=60.0)
    if result.truncated:
        raise StoreError(f"the predicate selects more than {MAX_SELECTED:,} failed steps; narrow it")
    return result.table


MAX_SELECTED = 2_000_000


def find_modes(store: CorpusStore, where: str | None = None, config: ModeConfig = ModeConfig(),
               keep: bool = True, members: bool = True) -> ModeResult:
    """The failure modes of the failed steps a predicate selects (all when None), computed once per corpus state.

    Kept as a result dataset inside the corpus (metrics/results.py) unless `keep` is False. A selection without
    failed steps gives a ModeResult without modes; its note says so. `members=False` leaves out the one table
    as long as the selection (every failed step's mode), for callers that show the modes and keep them cached.
    """
    from horizonlens.metrics.results import computed_once, result_key

    key = result_key("modes", (where or "").strip(), asdict(config))
    state = store.corpus_snapshot.fingerprint

    def compute() -> tuple[dict[str, pa.Table], dict[str, Any]]:
        result = compute_modes(store, where, config)
        return ({name: pa.Table.from_pandas(getattr(result, name), preserve_index=False)
                 for name in RESULT_TABLES}, result.note)

    tables, note = computed_once(store.root, "modes", key, state, RESULT_TABLES, compute, keep=keep)
    if not members:
        tables["members"] = tables["members"].slice(0, 0)
    return ModeResult(**{name: tables[name].to_pandas() for name in RESULT_TABLES}, note=note)


def compute_modes(store: CorpusStore, where: str | None = None, config: ModeConfig = ModeConfig()) -> ModeResult:
    """Read the selection's failed steps and cluster them (no caching; `find_modes` keeps the result)."""
    return cluster_steps(failed_steps(store, select_failed(store, where)), config, where)


def cluster_steps(steps: pd.DataFrame, config: ModeConfig = ModeConfig(), where: str | None = None) -> ModeResult:
    """Cluster failed steps (rows as `failed_steps` gives them) into modes and describe each mode."""
    note: dict[str, Any] = {"failed_steps": int(len(steps)), "where": (where or "").strip() or None,
                            "config": asdict(config)}
    if steps.empty:
        empty = ModeResult(pd.DataFrame(columns=COLUMNS), pd.DataFrame(columns=["trajectory_id", "step", "mode"]),
                           pd.DataFrame(columns=["mode", "facet", "value", "steps", "share", "lift"]),
                           pd.DataFrame(columns=["mode", "bin", "steps"]),
                           pd.DataFrame(columns=["mode", "rank", "trajectory_id", "step", "tools", "text", "agent",
                                                 "domain"]), {**note, "fitted_steps": 0, "distinct_texts": 0,
                                                              "sampled": False})
        return empty
    fitted = fit_modes(steps["text"].tolist(), config)
    steps["mode"] = fitted.assignment
    # a step's similarity to its mode's centroid orders the examples (most typical first)
    vec = fitted.vectors[fitted.text_index]
    assigned = steps["mode"].to_numpy()
    steps["typical"] = np.where(assigned >= 0, (vec * fitted.centroids[np.maximum(assigned, 0)]).sum(1), -1.0)
    note.update(fitted_steps=fitted.fitted_steps, distinct_texts=fitted.distinct_texts,
                sampled=fitted.fitted_steps < len(steps), unclustered=int((assigned == UNCLUSTERED).sum()))
    named = label_sample(assigned, config.seed)
    terms = distinguishing_terms(steps["text"].to_numpy()[named].tolist(), assigned[named])
    return _describe(steps, terms, config, note)


def label_sample(modes: np.ndarray, seed: int = 0, per_mode: int = LABEL_STEPS) -> np.ndarray:
    """Rows (ascending) of a seeded random sample of at most `per_mode` steps of each mode: what its label is read from.

    A label is a summary of the words a mode uses most; a few thousand steps tell it as well as all of them.
    """
    order = np.random.default_rng(seed).permutation(len(modes))
    rank = pd.Series(modes[order]).groupby(modes[order]).cumcount().to_numpy()
    return np.sort(order[rank < per_mode])


def _describe(steps: pd.DataFrame, terms: dict[int, list[str]], config: ModeConfig, note: dict[str, Any]) -> ModeResult:
    """Every table of a ModeResult from the failed steps with their `mode` and `typical` columns."""
    total = len(steps)
    rows, facets, positions, examples = [], [], [], []
    overall = {f: steps[f].fillna("(none)").value_counts(normalize=True) for f in FACETS}
    order = steps.groupby("mode").size().sort_values(ascending=False, kind="stable").index.tolist()
    order = [m for m in order if m != UNCLUSTERED] + ([UNCLUSTERED] if UNCLUSTERED in order else [])
    names = label_terms({int(m): w for m, w in terms.items()}, [int(m) for m in order])
    for rank, m in enumerate(order):
        part = steps[steps["mode"] == m].sort_values(["typical", "trajectory_id", "step"],
                                                     ascending=[False, True, True])
        top = part.iloc[0]
        words = terms.get(int(m), [])
        label = ("unclustered" if m == UNCLUSTERED else
                 f"M{rank + 1}: {' · '.join(names[int(m)]) if words else top['tools'] or 'no tool'}")
        labels = part["error_label"].dropna()
        rows.append({"mode": int(m), "label": label, "size": len(part), "share": len(part) / total,
                     "terms": ", ".join(words), "example": top["text"], "example_trajectory": top["trajectory_id"],
                     "example_step": int(top["step"]), "median_position": float(part["position"].median()),
                     "next_check_passed": float(part["next_check_passed"].dropna().astype(float).mean())
                     if part["next_check_passed"].notna().any() else None,
                     "run_succeeded": float((part["outcome"] == "success").mean()),
                     "error_label": labels.mode().iloc[0] if len(labels) else None,
                     "error_label_share": float((labels == labels.mode().iloc[0]).mean()) if len(labels) else None})
        for f in FACETS:
            shares = part[f].fillna("(none)").value_counts()
            for value, n in shares.items():
                facets.append({"mode": int(m), "facet": f, "value": str(value), "steps": int(n),
                               "share": n / len(part), "lift": (n / len(part)) / overall[f][value]})
        bins = np.minimum((part["position"].to_numpy() * POSITION_BINS).astype(int), POSITION_BINS - 1)
        for b, n in zip(*np.unique(bins, return_counts=True), strict=True):
            positions.append({"mode": int(m), "bin": int(b), "steps": int(n)})
        for i, r in enumerate(part.head(config.examples).to_dict("records")):
            examples.append({"mode": int(m), "rank": i + 1, "trajectory_id": r["trajectory_id"], "step": int(r["step"]),
                             "tools": r["tools"], "text": r["text"], "agent": r["agent"], "domain": r["domain"]})
    members = steps[["trajectory_id", "step", "mode"]].reset_index(drop=True)
    return ModeResult(pd.DataFrame(rows), members, pd.DataFrame(facets), pd.DataFrame(positions),
                      pd.DataFrame(examples), note)


def save_mode_labels(root: Any, result: ModeResult, mode: int, source: str = "modes") -> tuple[int, int]:
    """Label every step of one mode (category `mode`); returns (labels added, labels already present).

    The label's text is the mode's label, so the mode flows into filters, facets and attribution.
    """
    from horizonlens.labels.annotations import Label, add_labels

    found = result.modes[result.modes["mode"] == mode]
    if found.empty:
        raise StoreError(f"no mode {mode}; the modes are {', '.join(str(m) for m in result.modes['mode'])}")
    text = str(found.iloc[0]["label"])[:500]
    members = result.members[result.members["mode"] == mode]
    labels = [Label(trajectory_id=str(t), step=int(s), label=text, category="mode", source=source,
                    note=f"failure mode {mode}: {found.iloc[0]['terms']}")
              for t, s in zip(members["trajectory_id"], members["step"], strict=True)]
    ids, present = add_labels(root, labels)
    return len(ids), present


def mode_labels_at(store: CorpusStore, keys: pd.DataFrame, where: str | None = None) -> pd.DataFrame:
    """The failure mode of each of these steps that is a failed step of the selection: trajectory_id, step, label."""
    found = find_modes(store, where).labelled_members()
    return found.merge(keys[["trajectory_id", "step"]].drop_duplicates().astype({"step": "int64"}),
                       on=["trajectory_id", "step"])[["trajectory_id", "step", "mode", "label"]]


def routing_split(store: CorpusStore, checkpoint_id: str, where: str | None = None, groups: int = 4,
                  seed: int = 0) -> pd.DataFrame:
    """Replayed failed steps per (mode, routing group); groups are k-means clusters of their routing signatures.

    The modes are those of `where`'s failed steps (`find_modes`); only runs replayed through the checkpoint are read.
    """
    from sklearn.cluster import KMeans

    from horizonlens.metrics.replays import replayed_trajectories
    from horizonlens.metrics.routing_probe import step_signatures

    columns = ["mode", "routing_group", "steps"]
    members = find_modes(store, where).members
    replayed = set(replayed_trajectories(store, checkpoint_id))
    members = members[members["trajectory_id"].isin(replayed)]
    if members.empty:
        return pd.DataFrame(columns=columns)
    sig = step_signatures(store, checkpoint_id, sorted(members["trajectory_id"].astype(str).unique().tolist()))
    keys = sig.keys.assign(row=range(len(sig.keys))).merge(members, on=["trajectory_id", "step"])
    if len(keys) < groups:
        return pd.DataFrame(columns=columns)
    found = KMeans(n_clusters=groups, n_init=4, random_state=seed).fit_predict(sig.matrix[keys["row"].to_numpy()])
    keys["routing_group"] = [f"R{g + 1}" for g in found]
    return keys.groupby(["mode", "routing_group"]).size().unstack(fill_value=0).reset_index()
