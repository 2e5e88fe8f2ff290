"""Routing: which experts the router chose along one trajectory and across the replayed corpus."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from horizonlens.app import replayed_set, rollout_panel, state, ui
from horizonlens.figures import insight as ifig
from horizonlens.figures import routing as rfig
from horizonlens.metrics import model_side, replay_set, replays, routing, routing_map, routing_probe, timeline
from horizonlens.metrics import modes as mmodes


def _sample_note(df: pd.DataFrame) -> str:
    """What a token-tier statistic read, when it read a sample of the replayed corpus."""
    note = df.attrs.get("sample") or {}
    if not note.get("sampled"):
        return ""
    return (f" Read from {note['trajectories']:,} of {note['of_trajectories']:,} replayed trajectories "
            f"({note['tokens']:,} of {note['of_tokens']:,} tokens), a fixed sample.")


def _probe_answer(probe: pd.DataFrame) -> str:
    """One sentence: does the student route by teacher (and by domain)?"""
    parts = []
    for target in ("teacher", "domain"):
        row = probe[(probe["target"] == target) & (probe["layer"].astype(str) == "all")]
        if row.empty:
            continue
        r = row.iloc[0]
        verdict = "yes" if r["lower"] > r["baseline_upper"] else "not detectably"
        parts.append(f"Routes by {target}: {verdict} — routing predicts a step's {target} with {r['accuracy']:.1%} "
                     f"accuracy (95% interval {r['lower']:.1%}–{r['upper']:.1%}) against {r['baseline']:.1%} for the "
                     f"majority class, over {int(r['n']):,} steps of {int(r['trajectories'])} runs.")
    return " ".join(parts) or "No probe of teacher or domain for these runs."


store = state.require_store()
st.title("Expert routing")
checkpoints = store.replay_checkpoints
if not checkpoints:
    st.info("Nothing has been replayed into this corpus yet. Open a trajectory and press **Replay this trajectory**, "
            "or run `horizonlens replay CORPUS --checkpoint DIR --limit 50` for a batch.")
    st.stop()
mine = state.current_checkpoint_id()
ckpt = st.selectbox("Checkpoint", checkpoints, index=checkpoints.index(mine) if mine in checkpoints else 0,
                    key="routing_ckpt")
replayed = state.cached(replays.replayed_trajectories, store, ckpt)
layers = state.cached(replays.moe_layers, store, ckpt)
E = state.cached(routing.num_experts, store, ckpt)
st.caption(f"{len(replayed):,} trajectories replayed · {rfig.layer_range(layers)} · {E} experts")
top_n = rfig.TOP_N
if E > rfig.TOP_N + 1:
    top_n = st.slider("Experts named per chart", 8, min(E, 64), rfig.TOP_N, step=4, key="routing_top_n",
                      help=f"Charts show the busiest (or most specialised) experts by name and fold the other "
                           f"{E - rfig.TOP_N} of {E} into one “other” entry.")


def _scope() -> replay_set.ReplayScope:
    """Which replayed runs the corpus statistics use, said on the page (and flagged when not drawn at random)."""
    return replayed_set.disclose(store, ckpt, "routing_use_sample")


def one_trajectory() -> None:
    """One trajectory: where its experts go step by step, and the model's signals."""
    current = state.selected_trajectory()
    tid = st.selectbox("Trajectory", replayed, index=replayed.index(current) if current in replayed else 0,
                       key="routing_traj")
    # persisted (as the other tabs' choices): a look at another tab keeps them
    layer = st.select_slider("Layer", layers, value=layers[-1], key="routing_layer",
                             persist_state="page") if len(layers) > 1 else layers[0]
    failed = state.cached(timeline.failed_steps, store, tid)
    load = state.cached(routing.step_expert_load, store, ckpt, tid, layer)
    ui.chart(rfig.step_expert_heatmap(load, E, failed, layer, top_n),
             "Each column is a step, each row an expert of this layer (busiest over the trajectory on top); shade "
             "= its share of the step's token→expert assignments. Vertical bands = routing shifts; dotted lines "
             "= failed checks.", key="routing_step_heatmap", data=load)
    signals = state.cached(model_side.signals_by_step, store, ckpt, tid)
    drift = state.cached(routing.routing_drift, store, ckpt, tid)
    ui.chart(ifig.signals_small_multiples(signals, drift, failed),
             "Surprisal of the agent's action, router entropy, and drift of expert load from the trajectory's "
             "first steps (Jensen–Shannon distance, mean over layers), per step; one axis each.",
             key="routing_signals", data=signals)
    if st.button("Open this trajectory step by step", key="routing_open"):
        state.open_trajectory(tid)


def replayed_corpus() -> None:
    """The replayed corpus: load per layer, specialisation, co-activation, usage."""
    scope = _scope()
    ids = scope.trajectory_ids
    overall = state.cached(routing.expert_load, store, ckpt, None, ids)
    ui.chart(ifig.layer_expert_summary(overall, E), "Every MoE layer (rows), its experts ranked by their share of "
             "the layer's token→expert assignments (busiest left), ÷ the uniform 1/E. Expert ids are per layer, so "
             "the columns are ranks: a pale row is a balanced layer, a row red at the left and blue elsewhere "
             "leans on a few experts. The table names each layer's busiest.", key="routing_all_layers",
             data=overall)
    busiest = routing_map.busiest_experts(overall)
    cells = busiest.assign(cell=[f"E{e} · {share:.1%}"
                                 for e, share in zip(busiest["expert"], busiest["share"], strict=True)])
    st.dataframe(cells.pivot(index="layer", columns="rank", values="cell").rename(columns=lambda r: f"#{r}"),
                 key="routing_busiest")
    st.caption(f"The three busiest experts of each layer and their share of its assignments (uniform: "
               f"{1 / E:.1%}).")
    layer_c = st.select_slider("Layer", layers, value=layers[-1], key="routing_layer_corpus", persist_state="page") \
        if len(layers) > 1 else layers[0]
    seg = state.cached(routing.expert_load, store, ckpt, "segment", ids)
    ui.chart(rfig.specialization(seg, layer_c, "segment", top_n),
             "Expert load per segment type ÷ uniform 1/E: red experts are preferred for that kind of token "
             "(reasoning, tool call, observation, ...), blue avoided. Experts are grouped by the segment they "
             "prefer.", key="routing_by_segment", data=seg)
    dom_col, teacher_col = st.columns(2)
    with dom_col:
        dom = state.cached(routing.expert_load, store, ckpt, "domain", ids)
        ui.chart(rfig.specialization(dom, layer_c, "domain", top_n),
                 "The same by task domain: domain-specialised experts stand out in red.", key="routing_by_domain",
                 data=dom)
    with teacher_col:
        by_teacher = state.cached(routing.expert_load, store, ckpt, "teacher", ids)
        ui.chart(rfig.specialization(by_teacher, layer_c, "teacher", top_n),
                 "The same by the teacher that produced the run: does the student route by teacher?",
                 key="routing_by_teacher", data=by_teacher)
    left, right = st.columns(2)
    with left:
        co = state.cached(routing.coactivation, store, ckpt, layer_c, ids)
        ui.chart(rfig.coactivation_matrix(co, E, layer_c, top_n),
                 "Row i, column j: how often expert j is also in a token's top-k when expert i is. Experts "
                 "are ordered so that frequent partners sit together." + _sample_note(co), key="routing_coact",
                 data=co)
    with right:
        usage = state.cached(routing.layer_usage, store, ckpt, ids)
        ui.chart(rfig.layer_usage(usage), "Entropy of expert usage per layer (1 = perfectly balanced) and "
                 "max/mean load; collapse shows as low entropy and high imbalance.", key="routing_usage",
                 data=usage)
    consec = state.cached(routing.consecutive_same_expert, store, ckpt, ids)
    st.dataframe(consec, hide_index=True)
    st.caption("Consecutive tokens routed to the same top-1 expert, against the random baseline Σ share² "
               "(Mixtral §5); `any_overlap` = consecutive top-k sets share an expert." + _sample_note(consec))
    around = state.cached(model_side.around_failures, store, ckpt, trajectory_ids=ids)
    ui.chart(ifig.around_failures(around), "Mean surprisal and router entropy at agent steps before (−) and after "
             "(+) each check, for failed (red) and passed (green) checks. A red line above the green one before 0 "
             "means the model was already uneasy before the failure; only after 0, it reacts to it.",
             key="routing_around", data=around)


def probe_map_health() -> None:
    """Does routing carry teacher, domain or a coming failure; health; the map."""
    scope = _scope()
    ids = scope.trajectory_ids
    why = state.cached(routing_probe.probe_message, store, ckpt, ids)
    if why:
        st.info(why)
    else:
        probe = state.cached(routing_probe.kept_probe, store, ckpt, ids)
        st.markdown(ui.md(_probe_answer(probe)))
        target = st.segmented_control("Target", list(routing_probe.TARGETS), default="teacher",
                                      key="routing_probe_target", persist_state="page") or "teacher"
        ui.chart(ifig.probe(probe, target), "A logistic regression reads the target from a step's expert shares "
                 "(per layer, or all layers at once), scored on runs it never saw (5 folds grouped by run). Grey: "
                 "always guessing the most common class. Routing carries the target where blue clears grey.",
                 key="routing_probe", data=probe)
    health = state.cached(routing_map.routing_health, store, ckpt, ids)
    ui.chart(ifig.health(health, E), f"Per layer (rows) along the run (columns): experts below 1/(10·{E}) of the "
             "load, the busiest expert's load ÷ the mean, and usage entropy ÷ ln E. Collapse shows as many rare "
             "experts, a high max/mean and low entropy.", key="routing_health", data=health)
    st.dataframe(health[health["bin"] < 0].drop(columns=["bin"]), hide_index=True, key="routing_health_table")
    st.caption("The same over the whole horizon, per layer; click a column to sort.")
    st.subheader("Routing map")
    c = st.columns(3)
    level = c[0].segmented_control("Points", ["step", "run"], default="step", key="routing_map_level",
                                   persist_state="page") or "step"
    color = c[1].selectbox("Colour by", list(routing_map.COLOR_FIELDS), key="routing_map_color",
                           persist_state="page")
    method = c[2].segmented_control("Projection", ["pca", "umap"], default="pca", key="routing_map_method",
                                    persist_state="page",
                                    help="UMAP is computed once per replay state; the first takes a minute.") \
        or "pca"
    points = state.cached(routing_map.routing_map, store, ckpt, ids, level, method)
    if color == "mode" and level == "step":
        points = routing_map.with_modes(points, state.cached(mmodes.mode_labels_at, store,
                                                             points[["trajectory_id", "step"]]))
    sample = points.attrs.get("sample") or {}
    event = ui.chart(ifig.routing_map(points, color, f"Replayed {level}s by routing signature ({method.upper()})"),
                     f"Each point is a replayed {level} placed by its expert usage (per layer, the share of "
                     f"assignments per expert); nearby points route alike. {sample.get('points', 0):,} of "
                     f"{sample.get('of', 0):,} shown" + (" (a fixed sample of whole runs; statistics above use "
                     "all)" if sample.get("sampled") else "") + ". Click a point to open it.",
                     key="routing_map", data=points, on_select="rerun", selection_mode="points")
    picked = (event or {}).get("selection", {}).get("points", []) if event else []
    if picked and picked[0].get("customdata"):
        tid_p, step_p = picked[0]["customdata"][0], int(picked[0]["customdata"][1])
        state.open_trajectory(str(tid_p), step_p if step_p >= 0 else None)


def two_checkpoints() -> None:
    """Two checkpoints on the same tokens: how often they pick the same experts."""
    others = [c for c in checkpoints if c != ckpt]
    if not others:
        st.info("Replay the same trajectories with a second checkpoint to compare their routing token by token.")
    else:
        other = st.selectbox("Compare with", others, key="routing_other", persist_state="page")
        shared = state.cached(replays.shared_trajectories, store, ckpt, other)
        if not shared:
            st.info("The two checkpoints have no replayed trajectory in common.")
        else:
            tid2 = st.selectbox("Trajectory", shared, key="routing_cmp_traj", persist_state="page")
            agree = state.cached(routing.checkpoint_agreement, store, ckpt, other, tid2)
            ui.chart(rfig.agreement(agree, ckpt, other), "|E_A ∩ E_B| / k per layer on the same tokens, and "
                     "how often the top-1 expert is the same (needs the same tokenizer).", key="routing_agree",
                     data=agree)


def rollout_vs_replay() -> None:
    """What the checkpoint does itself beside what the trajectory recorded."""
    rollout_panel.render(store, ckpt)


# Only the open tab runs: each tab reads different tables, and at 40 layers x 256 experts they are not free.
ui.lazy_tabs({"One trajectory": one_trajectory, "Replayed corpus": replayed_corpus,
              "Probe, map and health": probe_map_health, "Two checkpoints": two_checkpoints,
              "Rollout vs replay": rollout_vs_replay}, key="routing_tab")
