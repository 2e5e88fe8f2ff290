"""Trajectory and routing figures: what happened along one trajectory, and how the router spread it.

The error timeline strip, signals along the horizon, a step's experts per layer, tokens x layers,
step x expert load, expert load vs uniform, co-activation and usage per layer.

Every expert view must read at 16 experts and at 256 (Agents-A1: 40 layers x 256 experts top-8), so:
- expert identity is encoded by position and printed ids, never by colour (nobody tells 256 hues apart);
  colour always encodes one quantity (a share, a gate weight, a ratio to uniform);
- an expert axis shows the TOP_N busiest experts in a meaningful order (by load, by preferred group,
  or clustered), and folds the rest into one "other" entry that says how many experts it stands for;
- heatmap rows get at least ROW_PX pixels, so 40-60 layers or TOP_N experts stay legible;
- layer lists are summarised as ranges (`layer_range`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from horizonlens.figures.style import SEQUENCE, STATUS_COLORS, empty, layout, plain, vlines
from horizonlens.metrics.expert_rank import OTHER, fold_experts, layer_ranks, preference_order, seriate, top_experts

TOP_N = 24  # experts named on an expert axis before the rest fold into "other" (all 16 of the sample fit)
RANKS = 8  # ranked experts per layer in a step's panel (Agents-A1 routes each token to 8)
ROW_PX = 18  # pixels per heatmap row: a layer or expert label at font size 10 stays readable
HIGHLIGHT = "#e8590c"  # the one accent colour: the expert the user picked
SPEC_LOG2_MAX = 3  # specialization colours saturate at 8x and 1/8x uniform (hover gives the exact ratio)
PLOT_WIDTH_PX = 1000  # about the width of a full-width chart at a 1500 px window (sidebar open)
VISIBLE_TOKENS = 16  # token columns in view at once: a horizontal label of TOKEN_CHARS characters fits each
TOKEN_CHARS = 9  # characters of a token's text on its axis label (hover has all of it)


def timeline_strip(timeline: pd.DataFrame, current: int | None = None) -> go.Figure:
    """One bar per step coloured by its check; ◆ marks the annotated decisive step. Click a bar to jump."""
    if timeline.empty:
        return empty("No steps", height=120)
    colors = [STATUS_COLORS[s] for s in timeline["status"]]
    hover = [f"step {s} · {plain(src)}{' · ' + plain(tool) if tool else ''}<br>{st}{' · ' + plain(lab) if lab else ''}"
             for s, src, tool, st, lab in zip(timeline["step"], timeline["source"], timeline["tool"],
                                             timeline["status"], timeline["error_label"], strict=True)]
    fig = go.Figure(go.Bar(x=timeline["step"], y=np.ones(len(timeline)), marker_color=colors, marker_line_width=0,
                           hovertext=hover, hoverinfo="text", name="steps", showlegend=False))
    decisive = timeline[timeline["decisive"]]
    if not decisive.empty:
        fig.add_scatter(x=decisive["step"], y=[1.25] * len(decisive), mode="markers", name="decisive step",
                        marker=dict(symbol="diamond", size=12, color="#111"), hovertext="annotated decisive error",
                        hoverinfo="text")
    if current is not None:
        fig.add_vline(x=current, line=dict(color="#3b6fd8", width=2))
    fig.update_yaxes(visible=False, range=[0, 1.45])
    return layout(fig, height=150, bargap=0.05, xaxis_title="step", margin=dict(l=10, r=10, t=10, b=40),
                  clickmode="event+select")


def step_signals(signals: pd.DataFrame, failed_steps: list[int], drift: pd.DataFrame | None = None,
                 current: int | None = None) -> go.Figure:
    """Surprisal, router entropy (and drift) per step along the horizon; red ticks mark failed checks."""
    if signals.empty:
        return empty("No replayed steps")
    fig = go.Figure()
    fig.add_scatter(x=signals["step"], y=signals["surprisal"], mode="lines+markers", name="surprisal (nats)",
                    line=dict(color=SEQUENCE[0]))
    if "entropy" in signals and signals["entropy"].notna().any():
        fig.add_scatter(x=signals["step"], y=signals["entropy"], mode="lines", name="router entropy (nats)",
                        line=dict(color=SEQUENCE[1]), yaxis="y2")
    if drift is not None and not drift.empty:
        fig.add_scatter(x=drift["step"], y=drift["drift"], mode="lines", name="routing drift (JS)",
                        line=dict(color=SEQUENCE[3], dash="dot"), yaxis="y2")
    vlines(fig, failed_steps, dict(color=STATUS_COLORS["failed"], width=1, dash="dot"))
    if current is not None:
        fig.add_vline(x=current, line=dict(color="#3b6fd8", width=2))
    return layout(fig, "Model signals along the horizon (dotted red: failed checks)", xaxis_title="step",
                  yaxis_title="surprisal", yaxis2=dict(overlaying="y", side="right", title="entropy / drift",
                                                       showgrid=False))


def layer_range(layers: Sequence[int]) -> str:
    """Layer numbers as one phrase: '40 MoE layers (0–39)', '58 MoE layers (3–60)', '18 MoE layers (1–35, every 2nd)'.

    Captions and titles use it instead of listing 40-60 numbers.
    """
    ls = sorted({int(x) for x in layers})
    if not ls:
        return "no MoE layers"
    noun = "MoE layer" if len(ls) == 1 else "MoE layers"
    runs: list[tuple[int, int]] = []
    for x in ls:
        if runs and x == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], x)
        else:
            runs.append((x, x))
    steps = {b - a for a, b in zip(ls, ls[1:], strict=False)}
    if len(runs) > 3 and len(steps) == 1:
        return f"{len(ls)} {noun} ({ls[0]}–{ls[-1]}, every {_ordinal(steps.pop())})"
    parts = [str(a) if a == b else f"{a}–{b}" for a, b in runs]
    if len(parts) > 4:
        parts = [*parts[:2], "…", parts[-1]]
    return f"{len(ls)} {noun} ({', '.join(parts)})"


def _ordinal(n: int) -> str:
    return {2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def expert_label(expert: int, n_experts: int = 1) -> str:
    """Axis label of an expert, or of the folded entry ('other (232)')."""
    return f"other ({n_experts})" if expert == OTHER else f"E{expert}"


def _axis_scope(shown: int, folded: int, total: int, order: str) -> str:
    """'all 16 experts by load' or 'the 24 busiest of 256 experts by load, 232 folded into "other"'."""
    if folded == 0:
        return f"all {total} experts, {order}"
    return f"the {shown} busiest of {total} experts, {order}; {folded} folded into “other”"


def step_experts(step_load: pd.DataFrame, step: int, num_experts: int, ranks: int = RANKS,
                 highlight: int | None = None) -> go.Figure:
    """One step's experts per layer: rows = layers, columns = rank 1..`ranks` then "other".

    Each cell prints the expert id at that rank and is shaded by its share of the layer's assignments
    in this step; "other" says what share the remaining experts took together (shaded by their mean,
    so it is comparable with one expert). The picked expert is outlined wherever it ranks.
    """
    table = layer_ranks(step_load, min(ranks, num_experts), num_experts)
    if table.empty:
        return empty("No routing for this step")
    other = table["expert"] == OTHER
    if (table.loc[other, "n_experts"] == 0).all():  # every expert fits in the ranks: no "other" column
        table = table[~other]
    ranks = int(table.loc[table["expert"] != OTHER, "rank"].max())
    has_other = bool((table["expert"] == OTHER).any())
    layers = sorted(table["layer"].unique())
    row = {layer: i for i, layer in enumerate(layers)}
    z = np.full((len(layers), ranks + int(has_other)), np.nan)
    text = np.full(z.shape, "", dtype=object)
    hover = np.full(z.shape, "", dtype=object)
    weighted = "mean_weight" in table
    for r in table.to_dict("records"):
        i, j = row[r["layer"]], min(int(r["rank"]) - 1, ranks)  # "other" is the last column
        layer, expert, share, n = int(r["layer"]), int(r["expert"]), float(r["share"]), int(r["assignments"])
        if expert == OTHER:
            z[i, j] = share / max(1, int(r["n_experts"]))
            text[i, j] = f"{share:.0%}"
            hover[i, j] = (f"layer {layer}: the other {int(r['n_experts'])} experts took {share:.1%} of this step's "
                           f"assignments together ({n:,})")
        elif n > 0:
            z[i, j] = share
            text[i, j] = str(expert)
            weight = f", mean gate weight {r['mean_weight']:.2f}" if weighted and pd.notna(r["mean_weight"]) else ""
            hover[i, j] = (f"layer {layer} · rank {j + 1}: expert {expert} took {share:.1%} of this step's "
                           f"assignments ({n:,}){weight}")
    cols = [f"#{j + 1}" for j in range(ranks)] + (["other"] if has_other else [])
    ylabels = [f"L{layer}" for layer in layers]
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=ylabels, text=text, texttemplate="%{text}", textfont=dict(size=10),
                               customdata=hover, hovertemplate="%{customdata}<extra></extra>", colorscale="Blues",
                               zmin=0, colorbar=dict(title="share", tickformat=".1%", thickness=12), xgap=1, ygap=1))
    title = f"Experts chosen in step {step}"
    if highlight is not None:
        hit = table[table["expert"] == highlight]
        fig.add_scatter(x=[cols[int(k) - 1] for k in hit["rank"]], y=[f"L{layer}" for layer in hit["layer"]],
                        mode="markers", hoverinfo="skip", showlegend=False,
                        marker=dict(symbol="square-open", size=17, color=HIGHLIGHT, line=dict(width=3)))
        title += f" · E{highlight} outlined ({len(hit)} of {len(layers)} layers)"
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=10))
    fig.update_xaxes(side="top", type="category")
    return layout(fig, title, height=max(220, 110 + ROW_PX * len(layers)), margin=dict(l=50, r=10, t=80, b=10))


def token_window(num_experts: int) -> int:
    """How many token columns the token view shows at once, so each cell can print an expert id.

    About 6 px per digit at font size 9 plus a margin: 64 tokens at 16 experts, 41 at 256.
    """
    digits = len(str(max(0, num_experts - 1)))
    return max(16, min(64, PLOT_WIDTH_PX // (6 * digits + 6)))


def token_label(index: int, text: str) -> str:
    """A token's axis label: its text on one line (spaces as ·, line breaks as ⏎), its position below."""
    shown = str(text).replace(" ", "·").replace("\n", "⏎").replace("\t", "⇥").replace("\r", "")
    return f"{plain(shown or '∅', limit=TOKEN_CHARS)}<br>{index}"


def token_expert_view(tokens: pd.DataFrame, routing: pd.DataFrame, num_experts: int,
                      highlight: int | None = None, surprisal: pd.DataFrame | None = None) -> go.Figure:
    """Tokens of one step (columns, text readable) x layers (rows), under a row of per-token surprisal.

    Without a picked expert each cell prints the token's top-1 expert id and is shaded by that
    expert's gate weight (how sure the router was). With a picked expert, only the cells where that
    expert is in the token's top-k are shaded, by the weight it received, and print its rank there.
    Hover shows the router's top-k experts, their weights and the router entropy.

    `surprisal` (token_index, surprisal, top1, scored; metrics.replays.step_token_surprisal) adds its own row on
    top, with its own colour scale: how surprised the model was by each token. Token labels are horizontal:
    VISIBLE_TOKENS columns are in view, and the chart pans sideways (drag) through the rest of the window.
    The layer heatmap is the figure's first trace.
    """
    if tokens.empty or routing.empty:
        return empty("No routed tokens in this step")
    layers = sorted(routing["layer"].unique())
    li = {layer: i for i, layer in enumerate(layers)}
    pos = {t: i for i, t in enumerate(tokens["token_index"].to_list())}
    texts = tokens["text"].to_list()
    z = np.full((len(layers), len(pos)), np.nan)
    cell = np.full(z.shape, "", dtype=object)
    hover = np.full(z.shape, "", dtype=object)
    for token_index, layer, experts, weights, ent in zip(routing["token_index"], routing["layer"],
                                                         routing["experts"], routing["weights"], routing["entropy"],
                                                         strict=True):
        if token_index not in pos:
            continue
        i, j = li[layer], pos[token_index]
        experts = [int(e) for e in experts]
        if highlight is None:
            z[i, j], cell[i, j] = float(weights[0]), str(experts[0])
        elif highlight in experts:
            k = experts.index(highlight)
            z[i, j], cell[i, j] = float(weights[k]), str(k + 1)
        pairs = ", ".join(f"E{e}: {w:.2f}" for e, w in zip(experts, weights, strict=True))  # the router's top-k
        hover[i, j] = f"{plain(repr(texts[j]))}<br>layer {layer}<br>{pairs}<br>entropy {ent:.2f}"
    labels = [token_label(t, text) for t, text in zip(pos, texts, strict=True)]
    show_text = len(pos) <= token_window(num_experts)
    scale: str | list[list[object]]
    if highlight is None:
        title = "Top-1 expert per token and layer (number: expert id; shade: its gate weight)"
        scale, bar = "Blues", "top-1 weight"
    else:
        title = (f"Expert {highlight} across layers: shaded where it is in a token's top-k (number: its rank there; "
                 f"shade: its gate weight)")
        scale, bar = [[0, "#fde4d3"], [1, HIGHLIGHT]], f"E{highlight} weight"
    has_surprisal = surprisal is not None and not surprisal.empty
    rows = 2 if has_surprisal else 1
    layer_px = ROW_PX * max(2, len(layers))
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.04 if rows == 2 else 0,
                        row_heights=[2.2 * ROW_PX, layer_px] if rows == 2 else None)
    fig.add_trace(go.Heatmap(z=z, x=labels, y=[f"L{layer}" for layer in layers], colorscale=scale, zmin=0,
                             text=cell if show_text else None, texttemplate="%{text}" if show_text else None,
                             textfont=dict(size=9), customdata=hover, hovertemplate="%{customdata}<extra></extra>",
                             colorbar=dict(title=bar, thickness=12), xgap=1, ygap=1),
                  row=rows, col=1)
    if has_surprisal:
        assert surprisal is not None
        fig.add_trace(_surprisal_row(surprisal, pos, texts, labels), row=1, col=1)
        title += "; top row: the model's surprisal at each token"
    visible = min(len(labels), VISIBLE_TOKENS)
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=10), fixedrange=True)
    fig.update_xaxes(type="category", tickangle=0, tickfont=dict(size=10), range=[-0.5, visible - 0.5],
                     showticklabels=False)
    fig.update_xaxes(showticklabels=True, row=rows, col=1)
    height = 120 + layer_px + (2.2 * ROW_PX + 30 if has_surprisal else 0) + 40
    return layout(fig, title, height=int(max(260, height)), margin=dict(l=70, r=10, t=50, b=50), dragmode="pan")


def _surprisal_row(surprisal: pd.DataFrame, pos: dict[int, int], texts: list[str], labels: list[str]) -> go.Heatmap:
    """One heatmap row: each token's surprisal (nats), printed, shaded on its own scale (darker: more surprised)."""
    values = np.full((1, len(pos)), np.nan)
    cell = np.full(values.shape, "", dtype=object)
    hover = np.full(values.shape, "", dtype=object)
    for token_index, value, top1, scored in zip(surprisal["token_index"], surprisal["surprisal"], surprisal["top1"],
                                                surprisal["scored"], strict=True):
        j = pos.get(int(token_index))
        if j is None:
            continue
        known = value is not None and np.isfinite(value)
        values[0, j] = float(value) if known else np.nan
        cell[0, j] = f"{value:.1f}" if known else "–"
        who = "agent-written (scored)" if scored else "context (not scored)"
        first = "the model's top-1 choice" if top1 else "not the model's top-1"
        hover[0, j] = (f"{plain(repr(texts[j]))}<br>surprisal {value:.2f} nats<br>{first}<br>{who}" if known
                       else f"{plain(repr(texts[j]))}<br>no surprisal (the first token)")
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    return go.Heatmap(z=values, x=labels, y=["surprisal"], colorscale="Oranges", zmin=0, zmax=max(top, 1.0),
                      text=cell, texttemplate="%{text}", textfont=dict(size=9), customdata=hover,
                      hovertemplate="%{customdata}<extra></extra>", xgap=1, ygap=1, showscale=False)


def step_expert_heatmap(load: pd.DataFrame, num_experts: int, failed_steps: list[int], layer: int,
                        top_n: int = TOP_N) -> go.Figure:
    """Step x expert load along the horizon for one layer: the busiest experts as rows, the rest as "other".

    Rows are ordered by the expert's load over the whole trajectory (busiest on top) and labelled; each
    cell is the expert's share of the step's assignments in this layer. The "other" row shows the mean
    share of the experts folded into it, so its shade compares with one expert; hover gives its total.
    """
    part = load[load["layer"] == layer]
    if part.empty:
        return empty("No routing for this layer")
    keep, n_fold = top_experts(part, top_n, num_experts)
    folded = fold_experts(part, keep, num_experts, by=["step"])
    steps = sorted(part["step"].unique())
    rows = [*keep, *([OTHER] if n_fold else [])]
    per = folded.pivot(index="expert", columns="step", values="per_expert").reindex(index=rows, columns=steps)
    share = folded.pivot(index="expert", columns="step", values="share").reindex(index=rows, columns=steps)
    labels = [expert_label(e, n_fold) for e in rows]
    hover = np.empty(per.shape, dtype=object)
    shares = share.to_numpy(dtype=float)
    for i, e in enumerate(rows):
        for j, s in enumerate(steps):
            v = shares[i, j]
            hover[i, j] = (f"step {s} · the other {n_fold} experts: {v:.1%} together, {v / n_fold:.2%} each on average"
                           if e == OTHER else f"step {s} · expert {e}: {v:.1%} of the step's assignments")
    fig = go.Figure(go.Heatmap(z=per.to_numpy(), x=steps, y=labels, colorscale="Blues", zmin=0, customdata=hover,
                               hovertemplate="%{customdata}<extra></extra>", ygap=1,
                               colorbar=dict(title="share", tickformat=".1%", thickness=12)))
    vlines(fig, failed_steps, dict(color=STATUS_COLORS["failed"], width=1, dash="dot"))
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=10), title="expert")
    scope = _axis_scope(len(keep), n_fold, num_experts, "busiest on top")
    return layout(fig, f"Expert load per step, layer {layer}: {scope} (dotted: failed checks)",
                  height=max(300, 150 + ROW_PX * len(rows)), xaxis_title="step")


def specialization(load: pd.DataFrame, layer: int, by: str, top_n: int = TOP_N) -> go.Figure:
    """Expert load per segment/domain/teacher divided by the uniform 1/E (1 = no preference), grouped visibly.

    Rows are the groups, top to bottom. Columns are the `top_n` experts with the strongest preference for some
    group, in blocks: the experts that prefer the first row's group most, then the second's, and so on
    (strongest preference first within a block), then "other": the folded experts' load divided by their
    uniform share. Each block is named in a band above the plot and set off by a line, and each expert's
    preferred cell is dotted, so the blocks step down the rows.
    """
    part = load[load["layer"] == layer]
    if part.empty:
        return empty("No replayed routing yet")
    E = int(round(1 / float(part["uniform"].iloc[0])))
    pivot = part.pivot_table(index="group", columns="expert", values="specialization", fill_value=0)
    strongest = pivot.max(axis=0).sort_values(ascending=False, kind="stable")
    keep = strongest.index.tolist() if len(strongest) <= top_n + 1 else strongest.index[:top_n].tolist()
    order = preference_order(pivot[keep])
    z = pivot[order].to_numpy()
    preferred = z.argmax(axis=0)  # row of each shown expert's preferred group (non-decreasing along the columns)
    labels = [expert_label(e) for e in order]
    n_fold = E - len(order)
    if n_fold > 0:
        folded = part[~part["expert"].isin(order)].groupby("group")["share"].sum().reindex(pivot.index, fill_value=0)
        z = np.column_stack([z, folded.to_numpy() / (n_fold / E)])
        labels.append(expert_label(OTHER, n_fold))
    groups = [plain(g) for g in pivot.index]
    # Colour is log2 of the ratio, symmetric around 1x: 4x preferred and 4x avoided look equally strong.
    ticks = list(range(-SPEC_LOG2_MAX, SPEC_LOG2_MAX + 1))
    fig = go.Figure(go.Heatmap(z=np.log2(np.clip(z, 2.0 ** -SPEC_LOG2_MAX, 2.0 ** SPEC_LOG2_MAX)), x=labels,
                               y=groups, customdata=z, colorscale="RdBu_r",
                               zmin=-SPEC_LOG2_MAX, zmax=SPEC_LOG2_MAX, xgap=1, ygap=1,
                               colorbar=dict(title="× uniform", thickness=12, tickvals=ticks,
                                             ticktext=[f"{2.0 ** t:g}×" if t >= 0 else f"1/{2 ** -t}×"
                                                       for t in ticks]),
                               hovertemplate=f"{by} %{{y}} · %{{x}}: %{{customdata:.2f}}× uniform<extra></extra>"))
    fig.add_scatter(x=labels[:len(order)], y=[groups[i] for i in preferred], mode="markers", hoverinfo="skip",
                    showlegend=False,
                    marker=dict(symbol="circle", size=7, color="white", line=dict(color="#222", width=1.5)))
    _group_bands(fig, [str(g) for g in pivot.index], preferred, len(labels))
    fig.update_xaxes(type="category", tickangle=-60, tickfont=dict(size=10),
                     title=dict(text=(f"all {E} experts" if n_fold == 0 else f"the {len(order)} most specialised of "
                                      f"{E} experts, {n_fold} folded into “other”") +
                                f", in blocks by the {by} each prefers (dot)", font=dict(size=11)))
    fig.update_yaxes(type="category", autorange="reversed", tickfont=dict(size=10))
    return layout(fig, f"Expert load by {by} ÷ uniform, layer {layer}", height=max(290, 210 + 26 * len(pivot)),
                  margin=dict(l=110, r=10, t=80, b=95))


BAND_COLORS = ("#e9edf5", "#f6f1e7")  # alternating backgrounds of the group labels above a specialization heatmap


def _group_bands(fig: go.Figure, groups: list[str], preferred: np.ndarray, n_columns: int) -> None:
    """Name each block of columns (the experts preferring one group) in a band above the plot; a line between."""
    starts = np.flatnonzero(np.r_[True, preferred[1:] != preferred[:-1]]) if len(preferred) else np.array([], int)
    ends = np.r_[starts[1:], len(preferred)]
    for k, (i0, i1) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        name = groups[int(preferred[i0])]
        fig.add_shape(type="rect", xref="x", yref="paper", x0=i0 - 0.5, x1=i1 - 0.5, y0=1.01, y1=1.0 + 34 / 300,
                      line=dict(width=0), fillcolor=BAND_COLORS[k % 2], layer="below")
        fig.add_annotation(x=(i0 + i1 - 1) / 2, y=1.01, xref="x", yref="paper", yanchor="bottom", showarrow=False,
                           text=plain(name, max(2, 3 * (i1 - i0))), hovertext=plain(name), font=dict(size=9))
        if i0 > 0:
            fig.add_shape(type="line", xref="x", yref="paper", x0=i0 - 0.5, x1=i0 - 0.5, y0=0, y1=1.0 + 34 / 300,
                          line=dict(color="#444", width=1.5))
    if len(preferred) and n_columns > len(preferred):  # "other" set apart too
        fig.add_shape(type="line", xref="x", yref="paper", x0=len(preferred) - 0.5, x1=len(preferred) - 0.5, y0=0,
                      y1=1, line=dict(color="#444", width=1.5, dash="dot"))


def coactivation_matrix(co: pd.DataFrame, num_experts: int, layer: int, top_n: int = TOP_N) -> go.Figure:
    """Expert x expert heatmap of N(i, j) / N(i) for the busiest experts, ordered so that partners sit together.

    The `top_n` experts with the most assignments (N(i)) are kept; their order comes from spectral
    seriation of the pair counts, so experts that are often chosen together form visible blocks.
    """
    if co.empty:
        return empty("No co-activations (top-1 routing or no replays)")
    n_i = co.groupby("i")["n_i"].first()
    counts = pd.DataFrame({"expert": n_i.index.astype(int), "assignments": n_i.to_numpy()})
    keep, n_fold = top_experts(counts, top_n, num_experts)
    keep = [e for e in keep if e in n_i.index]
    sub = co[co["i"].isin(keep) & co["j"].isin(keep)]
    at = {e: k for k, e in enumerate(keep)}
    pairs = np.zeros((len(keep), len(keep)))
    pairs[sub["i"].map(at).to_numpy(), sub["j"].map(at).to_numpy()] = sub["n_ij"].to_numpy(dtype=float)
    order = [keep[k] for k in seriate(pairs)]
    z = np.full((len(order), len(order)), np.nan)
    pos = {e: k for k, e in enumerate(order)}
    z[sub["i"].map(pos).to_numpy(), sub["j"].map(pos).to_numpy()] = sub["rate"].to_numpy(dtype=float)
    labels = [expert_label(e) for e in order]
    hover = "with %{y}, %{x} is also chosen %{z:.1%} of the time<extra></extra>"
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, colorscale="Magma_r", zmin=0, xgap=1, ygap=1,
                               colorbar=dict(title="N(i,j)/N(i)", thickness=12), hovertemplate=hover))
    fig.update_xaxes(type="category", tickangle=-60, tickfont=dict(size=10), title="expert j")
    fig.update_yaxes(type="category", autorange="reversed", tickfont=dict(size=10), title="expert i")
    scope = ("all experts" if n_fold == 0 else f"the {len(order)} busiest of {num_experts} experts")
    return layout(fig, f"Co-activation, layer {layer}: {scope}, clustered", height=190 + ROW_PX * len(order),
                  margin=dict(l=70, r=10, t=60, b=70))


def layer_usage(usage: pd.DataFrame) -> go.Figure:
    """Per MoE layer: how evenly experts are used (normalised entropy) and the busiest expert's load; one axis each."""
    if usage.empty:
        return empty("No replayed routing yet")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=("usage entropy ÷ ln E (1 = balanced)", "busiest expert's load ÷ mean"))
    fig.add_bar(x=usage["layer"], y=usage["normalized_entropy"], marker_color=SEQUENCE[0], showlegend=False,
                hovertemplate="layer %{x}: %{y:.3f} of the balanced entropy<extra></extra>", row=1, col=1)
    fig.add_scatter(x=usage["layer"], y=usage["imbalance"], mode="lines+markers", line=dict(color=SEQUENCE[4]),
                    showlegend=False, hovertemplate="layer %{x}: %{y:.2f}× the mean load<extra></extra>", row=1, col=2)
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    fig.update_xaxes(title="layer")
    return layout(fig, f"Expert usage per layer, {layer_range(usage['layer'].tolist())}", margin=dict(
        l=50, r=20, t=70, b=45))


def agreement(df: pd.DataFrame, a: str, b: str) -> go.Figure:
    """Per layer: how often two checkpoints route the same token to the same experts."""
    if df.empty:
        return empty("The two checkpoints share no replayed tokens for this trajectory")
    fig = go.Figure()
    fig.add_bar(x=df["layer"], y=df["agreement"], name="|E_A ∩ E_B| / k", marker_color=SEQUENCE[0])
    fig.add_bar(x=df["layer"], y=df["top1_agreement"], name="same top-1", marker_color=SEQUENCE[1])
    return layout(fig, f"Routing agreement: {plain(a, 28)} vs {plain(b, 28)}", barmode="group", yaxis_range=[0, 1],
                  yaxis_tickformat=".0%", xaxis_title="layer")
