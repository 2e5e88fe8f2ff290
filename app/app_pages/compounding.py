"""Compounding: where checks fail along the horizon, and whether failures make further failures likelier.

The controls and the figures are one fragment: changing the facet or a filter reruns this panel only, and only
its open tab runs. Every
metric is read from the corpus aggregates (a facet or domain/agent filter from the precomputed cubes) and
cached per corpus version.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from horizonlens.app import replayed_set, state, ui
from horizonlens.figures import compounding as cfig
from horizonlens.figures import early_warning as ewfig
from horizonlens.metrics import attribution, compounding, early_warning
from horizonlens.metrics.attribution import LabelSet
from horizonlens.query import CorpusStore, TrajectoryFilter

store = state.require_store()
st.title("Error compounding")


@st.fragment
def compounding_panel() -> None:
    """Facet and filters, then every compounding figure for them."""
    c = st.columns([1, 2, 2])
    facet = c[0].selectbox("Facet by", ["(none)", *compounding.FACETS], key="comp_facet",
                           help="label_category: runs grouped by the categories of their labels.")
    domains = c[1].multiselect("Only domains", state.cached(CorpusStore.distinct, store, "domain"),
                               key="comp_domains")
    agents = c[2].multiselect("Only agents", state.cached(CorpusStore.distinct, store, "agent"), key="comp_agents")
    by = None if facet == "(none)" else facet
    flt = TrajectoryFilter(domains=domains, agents=agents)

    # Only the open tab runs and draws: eight charts at once made this the slowest first load of the app
    # (bench/RESULTS.md), most of it the browser drawing figures the user had not scrolled to yet.
    ui.lazy_tabs({"Horizons": lambda: _horizons(by, flt),
                  "Compounding signature": lambda: _signature(by, flt),
                  "Success vs length": lambda: _success_vs_length(by, flt),
                  "Decisive step": lambda: _attribution(state.current_checkpoint_id(), flt),
                  "Early warning": lambda: _early_warning(state.current_checkpoint_id(), flt)}, key="comp_tab")


def _horizons(by: str | None, flt: TrajectoryFilter) -> None:
    """The step error rate, every horizon in checks and steps, and survival and hazard of the first failure."""
    rate = state.cached(compounding.step_error_rate, store, by, flt)
    st.dataframe(rate, hide_index=True, key="comp_rate", column_config={
        "rate": st.column_config.NumberColumn("p̂", format="%.4f"),
        "horizon_50": st.column_config.NumberColumn("H₅₀ (checks)", format="%.1f"),
        "horizon_80": st.column_config.NumberColumn("H₈₀ (checks)", format="%.1f")})
    st.caption("Step error rate p̂ = failed checks / checks (95% Wilson interval) and the horizons "
               "H_s = ln s / ln(1−p̂): how many checked steps a run survives with probability s if errors were "
               "independent.")

    km = state.cached(compounding.survival, store, by, flt)
    svl = state.cached(compounding.success_vs_length, store, by, flt)
    horizons_panel(rate, km, svl["fits"], state.cached(compounding.checks_per_step, store, by, flt))
    left, right = st.columns(2)
    with left:
        max_t = int(km["t"].max()) if not km.empty else 1
        ui.chart(cfig.survival(km, max_t=min(max_t, 150)),
                 "Share of runs with no failed check yet after t checked steps (band: 95% CI). Dashed: "
                 "independent errors at the overall rate p̂; dotted: at the clean-run rate p₀ = P(fail | no earlier "
                 "failure). Solid below dotted = first failures come sooner along the horizon than a constant rate "
                 "predicts.",
                 key="comp_survival",
                 data=km)
    with right:
        ui.chart(cfig.hazard(km), "Chance that the first failure happens at t, given none before (steps with ≥20 "
                 "runs at risk). A rising hazard means later steps are harder.", key="comp_hazard", data=km)


def _success_vs_length(by: str | None, flt: TrajectoryFilter) -> None:
    """Success rate against run length, with the fitted 50% and 80% horizons in steps."""
    svl = state.cached(compounding.success_vs_length, store, by, flt)
    ui.chart(cfig.success_vs_length(svl["points"], svl["fits"]),
             "Success rate against step count (dots: binned; line: logistic fit on log2 steps). Vertical lines: the "
             "step counts at which predicted success falls to 50% and 80% (the same horizons in checks: “Horizons "
             "in checks and in steps”, tab Horizons).", key="comp_length", data=svl["fits"])
    st.dataframe(svl["fits"], hide_index=True, key="comp_fits")


def _signature(by: str | None, flt: TrajectoryFilter) -> None:
    """Whether failures make further failures likelier, how runs recover, and how reliable repeated trials are."""
    left, right = st.columns(2)
    with left:
        sc = state.cached(compounding.self_conditioning, store, by, flt)
        ui.chart(cfig.self_conditioning(sc), "P(check fails | j earlier failed checks in the run). Bars rising with "
                 "j are the compounding signature: the agent conditions on its own mistakes.", key="comp_selfcond",
                 data=sc)
    with right:
        prev = state.cached(compounding.previous_step, store, by, flt)
        ui.chart(cfig.previous_step(prev), "Failure rate right after a failed check vs after a passed one.",
                 key="comp_prev", data=prev)

    left, right = st.columns(2)
    with left:
        rec = state.cached(compounding.recovery, store, by, flt)
        ui.chart(cfig.recovery(rec), "After a failed check: how often the next check passes, the same tool is "
                 "retried within two steps and passes, and the run still succeeds.", key="comp_recovery", data=rec)
    with right:
        pk = state.cached(compounding.pass_k, store, by, flt)
        ui.chart(cfig.pass_k(pk), "pass^k: chance that k trials of the same task all succeed (unbiased estimator "
                 "over tasks). A steep drop = capable but unreliable.", key="comp_passk", data=pk)


def horizons_panel(rate: pd.DataFrame, km: pd.DataFrame, fits: pd.DataFrame, per_step: pd.DataFrame) -> None:
    """Every horizon of the page in checks and in steps, and in words how the two units relate."""
    table = compounding.horizons(rate, km, fits, per_step)
    st.markdown("**Horizons in checks and in steps**")
    st.dataframe(table, hide_index=True, key="comp_horizons", column_config={
        "checks": st.column_config.NumberColumn("in checks", format="%.1f"),
        "steps": st.column_config.NumberColumn("in steps", format="%.1f"),
        "checks_per_step": st.column_config.NumberColumn("checks per step", format="%.2f")})
    if len(per_step) == 1 and not table.empty:
        st.caption(horizons_text(table, per_step.iloc[0]))
    else:
        st.caption("Per group: a horizon known in checks is converted to steps at the group's checks per step, and "
                   "one known in steps the other way (an average over the group, not a per-run conversion).")


def horizons_text(table: pd.DataFrame, counts: pd.Series) -> str:
    """How the 50% horizons relate, in words, for one selection."""
    at = table[table["level"] == "50%"].set_index("horizon")

    def both(name: str, in_steps: bool = False) -> str:
        row = at.loc[name] if name in at.index else None
        if row is None or pd.isna(row["checks"] if not in_steps else row["steps"]):
            return "never (not reached)"
        first, other = (("steps", "checks") if in_steps else ("checks", "steps"))
        beside = f" ≈ {row[other]:.1f} {other}" if pd.notna(row[other]) else ""
        return f"{row[first]:.1f} {first}{beside}"

    return (f"Here a step carries {counts['checks_per_step']:.2f} checks on average ({counts['checks']:,} checks "
            f"over {counts['steps']:,} steps). 50% horizons: independent errors at p̂ predict the first failed check "
            f"by {both('independent errors (H)')}; observed, half of the runs have one by "
            f"{both('first failed check, observed')}; and half of the runs succeed up to "
            f"{both('success vs step count (fit)', in_steps=True)}. Success comes later than the first failed "
            "check because runs recover from failed checks.")


def _attribution(ckpt_id: str | None, flt: TrajectoryFilter) -> None:
    st.subheader("Decisive-step attribution")
    sets = state.cached(attribution.label_sets, store)
    importer = "decisive step marked by the importer"
    a = st.columns(2)
    # persist_state: a choice made here is kept while another tab is open (a widget not drawn loses its value)
    truth_name = a[0].selectbox("Truth", [importer, *(x.name for x in sets)], key="comp_attr_truth",
                                persist_state="page",
                                help="What counts as the failure step: the importer's decisive step, or the labels "
                                     "of one category (and source).")
    truth = None if truth_name == importer else LabelSet.parse(truth_name)
    chosen = a[1].multiselect("Also score these labels as predictors", [x.name for x in sets if x.name != truth_name],
                              key="comp_attr_predictors", persist_state="page",
                              help="E.g. a judge's predicted steps imported as labels.")
    acc = state.cached(attribution.scores, store, ckpt_id, flt, truth, [LabelSet.parse(n) for n in chosen])
    if acc.empty:
        st.info("No trajectory here carries the chosen truth (for the importer's decisive step: a failed run with "
                "one).")
        return
    st.dataframe(acc, hide_index=True, key="comp_attribution")
    st.caption("How often each predictor names a truth step of the run, exactly or within ±k steps (distance to the "
               "nearest truth step; no prediction counts as wrong), and the agent it blames where the truth names "
               "one (Who&When; AgentRx). The highest-surprisal rule appears once trajectories are replayed.")


def _early_warning(ckpt_id: str | None, flt: TrajectoryFilter) -> None:
    st.subheader("Early warning: do the model's signals rise before a failed check?")
    if not ckpt_id or ckpt_id not in store.replay_checkpoints:
        st.info("Replay trajectories through the checkpoint (Trajectory page, or `horizonlens replay`) to see whether "
                "its surprisal, router entropy and routing drift warn of failed checks.")
        return
    narrowed = flt.domains or flt.agents
    scope = replayed_set.disclose(store, ckpt_id, "comp_use_sample",
                                  "Only those in the domains and agents chosen above." if narrowed else "")
    k = st.slider("Within the next k steps", 1, 10, early_warning.DEFAULT_K, key="comp_ew_k",
                  persist_state="page")  # kept while another tab is open
    ew = state.cached(early_warning.early_warning, store, ckpt_id, k, flt, trajectory_ids=scope.trajectory_ids)
    ui.chart(ewfig.auroc_by_signal(ew),
             f"AUROC of each signal at step t for 'a check fails in t+1…t+{k}' (bars: 95% bootstrap interval over "
             "trajectories). 0.5 = no better than chance; grey = baselines that need no model (step position, "
             "previous check failed). A signal is useful only where it beats 0.5 and the baselines.",
             key="comp_early_warning", data=ew)
    st.dataframe(ew, hide_index=True, key="comp_early_warning_table", column_config={
        "median_lead_steps": st.column_config.NumberColumn(
            "median lead (steps)", help="From the first step where the signal reaches its run's 90th percentile to "
                                        "the run's first failed check; negative = the signal rose after the failure.")})


compounding_panel()
