"""Routing views at 16 and at 256 experts: ordering, top-N + "other" folding, ranks, layer ranges.

The step tables here are planted: a few experts per layer get known extra load, so the busiest experts,
their order and the folded remainder are known in advance and checked against the figures' own data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from horizonlens.figures import routing as rfig
from horizonlens.metrics.expert_rank import (
    OTHER,
    busiest,
    expert_order,
    expert_shares,
    fold_experts,
    layer_ranks,
    preference_order,
    seriate,
    top_experts,
)

SHAPES = [(4, 16), (40, 256)]  # the bundled sample, and Agents-A1


def planted_load(layers: int, experts: int, steps: int = 12, seed: int = 0) -> tuple[pd.DataFrame, dict[int, list]]:
    """A step table (step, layer, expert, assignments) with background noise and 3 planted busy experts per layer.

    Returns the table and, per layer, the planted experts from busiest to least busy.
    """
    rng = np.random.default_rng(seed)
    rows = []
    planted = {}
    for layer in range(layers):
        busy = rng.choice(experts, size=3, replace=False).tolist()
        planted[layer] = busy
        for step in range(steps):
            counts = rng.integers(0, 3, size=experts)
            for extra, e in zip((60, 40, 25), busy, strict=True):
                counts[e] += extra
            rows += [{"step": step, "layer": layer, "expert": e, "assignments": int(n)}
                     for e, n in enumerate(counts) if n > 0]
    return pd.DataFrame(rows), planted


def _spec(fig) -> dict:  # noqa: ANN001
    """The traces' data as the figure holds it (to_dict would encode numeric arrays as base64)."""
    keys = ("x", "y", "z", "text", "customdata", "zmin", "zmax")
    return {"data": [{k: getattr(trace, k, None) for k in keys} for trace in fig.data]}


# --- expert_rank ----------------------------------------------------------------------------------

def test_expert_order_busiest_first_ties_by_id_unused_last() -> None:
    load = pd.DataFrame({"expert": [3, 1, 2, 3, 5], "assignments": [1, 4, 4, 2, 0]})
    assert expert_order(load) == [1, 2, 3, 5]  # 1 and 2 tie at 4: lower id first; 3 has 1 + 2
    assert expert_order(load, range(7)) == [1, 2, 3, 0, 4, 5, 6]  # never-seen experts join the zeros, by id


def test_expert_shares_cover_every_expert_busiest_first() -> None:
    load = pd.DataFrame({"layer": [0, 0, 1, 1], "expert": [3, 1, 1, 0], "assignments": [2, 1, 4, 1]})
    shares = expert_shares(load, 5)
    assert shares["expert"].tolist() == [1, 3, 0, 2, 4]  # 1 has 1 + 4 over both layers; unused ids last
    assert shares["assignments"].tolist() == [5, 2, 1, 0, 0]
    assert shares["share"].tolist() == pytest.approx([5 / 8, 2 / 8, 1 / 8, 0, 0])
    empty = expert_shares(load.iloc[:0], 3)
    assert empty["expert"].tolist() == [0, 1, 2] and empty["share"].tolist() == [0, 0, 0]


@pytest.mark.parametrize("layers, experts", SHAPES)
def test_top_experts_fold_only_when_it_hides_more_than_one(layers: int, experts: int) -> None:
    load, planted = planted_load(layers, experts)
    part = load[load["layer"] == 0]
    keep, folded = top_experts(part, 24, experts)
    if experts == 16:
        assert (len(keep), folded) == (16, 0)
    else:
        assert (len(keep), folded) == (24, 232)
    assert keep[:3] == planted[0]  # the planted experts lead, in their planted order
    keep, folded = top_experts(part, experts - 1, experts)  # folding one expert would hide it for nothing
    assert (len(keep), folded) == (experts, 0)


@pytest.mark.parametrize("layers, experts", SHAPES)
def test_fold_experts_keeps_every_assignment(layers: int, experts: int) -> None:
    load, planted = planted_load(layers, experts)
    part = load[load["layer"] == 1]
    keep = planted[1][:2]
    folded = fold_experts(part, keep, experts, by=["step"])
    assert sorted(folded["expert"].unique()) == sorted([*keep, OTHER])
    for step, grp in folded.groupby("step"):
        raw = part[part["step"] == step]
        assert grp["assignments"].sum() == raw["assignments"].sum()
        assert grp["share"].sum() == pytest.approx(1.0)
        other = grp[grp["expert"] == OTHER].iloc[0]
        assert other["assignments"] == raw.loc[~raw["expert"].isin(keep), "assignments"].sum()
        assert other["n_experts"] == experts - 2
        assert other["per_expert"] == pytest.approx(other["share"] / (experts - 2))


def test_layer_ranks_hand_computed() -> None:
    step = pd.DataFrame({"layer": [0, 0, 0, 0, 1, 1], "expert": [7, 2, 9, 4, 3, 5],
                         "assignments": [5, 3, 3, 1, 2, 2], "mean_weight": [0.5, 0.2, 0.4, 0.1, 0.3, 0.6]})
    table = layer_ranks(step, ranks=2, num_experts=10)
    l0 = table[table["layer"] == 0]
    assert l0["expert"].tolist() == [7, 2, OTHER]  # 2 and 9 tie at 3: lower id ranks first
    assert l0["share"].tolist() == pytest.approx([5 / 12, 3 / 12, 4 / 12])
    assert l0["n_experts"].tolist() == [1, 1, 8]
    assert l0["mean_weight"].iloc[2] == pytest.approx((3 * 0.4 + 1 * 0.1) / 4)  # weighted by assignments
    l1 = table[table["layer"] == 1]
    assert l1["expert"].tolist() == [3, 5, OTHER] and l1["assignments"].tolist() == [2, 2, 0]


def test_busiest_ranks_by_share_of_own_layer() -> None:
    step = pd.DataFrame({"layer": [0, 0, 1, 1, 1], "expert": [1, 2, 1, 3, 4], "assignments": [10, 10, 9, 1, 2]})
    top = busiest(step, 3)
    # layer 1 has fewer assignments, but expert 1 took 9/12 of it: more than 10/20 in layer 0
    assert list(zip(top["layer"], top["expert"], strict=True)) == [(1, 1), (0, 1), (0, 2)]
    assert top["share"].tolist() == pytest.approx([0.75, 0.5, 0.5])


def test_seriate_recovers_planted_blocks() -> None:
    rng = np.random.default_rng(1)
    blocks = np.repeat(np.arange(4), 6)  # 24 experts in 4 groups that co-activate
    sim = (blocks[:, None] == blocks[None, :]) * 20.0 + rng.random((24, 24))
    perm = rng.permutation(24)
    order = seriate(sim[np.ix_(perm, perm)])
    labels = blocks[perm][order]
    assert sorted(order.tolist()) == list(range(24))
    assert (np.diff(labels) != 0).sum() == 3  # each block is contiguous: exactly 3 boundaries


def test_preference_order_groups_specialists() -> None:
    spec = pd.DataFrame([[3.0, 0.5, 1.0, 0.2], [0.1, 2.0, 1.2, 4.0]], index=["reasoning", "tool_call"],
                        columns=[10, 11, 12, 13])
    assert preference_order(spec) == [10, 13, 11, 12]  # reasoning's specialist first, then tool_call's by strength


# --- figures --------------------------------------------------------------------------------------

@pytest.mark.parametrize("layers, expected", [
    (range(40), "40 MoE layers (0–39)"),
    (range(3, 61), "58 MoE layers (3–60)"),
    (range(1, 36, 2), "18 MoE layers (1–35, every 2nd)"),
    ([0, 1, 2, 5, 6, 7], "6 MoE layers (0–2, 5–7)"),
    ([0, 2, 3, 9, 12, 13, 20], "7 MoE layers (0, 2–3, …, 20)"),
    ([3], "1 MoE layer (3)"),
    ([], "no MoE layers"),
])
def test_layer_range(layers, expected: str) -> None:  # noqa: ANN001
    assert rfig.layer_range(list(layers)) == expected


@pytest.mark.parametrize("layers, experts", SHAPES)
def test_step_expert_heatmap_rows_are_the_busiest_then_other(layers: int, experts: int) -> None:
    load, planted = planted_load(layers, experts)
    layer = layers - 1
    heat = _spec(rfig.step_expert_heatmap(load, experts, [2], layer))["data"][0]
    labels = list(heat["y"])
    assert labels[:3] == [f"E{e}" for e in planted[layer]]
    z = np.array(heat["z"], dtype=float)
    part = load[load["layer"] == layer]
    if experts == 16:
        assert len(labels) == 16 and not any(lab.startswith("other") for lab in labels)
    else:
        assert len(labels) == 25 and labels[-1] == "other (232)"
        shown = [int(lab[1:]) for lab in labels[:-1]]
        step0 = part[part["step"] == 0]
        rest = step0.loc[~step0["expert"].isin(shown), "assignments"].sum() / step0["assignments"].sum()
        assert z[-1, 0] == pytest.approx(rest / 232)  # the folded row: mean share of the folded experts
    first = part[(part["step"] == 0) & (part["expert"] == planted[layer][0])]["assignments"].iloc[0]
    assert z[0, 0] == pytest.approx(first / part[part["step"] == 0]["assignments"].sum())
    fig = rfig.step_expert_heatmap(load, experts, [2], layer)
    assert fig.layout.height >= rfig.ROW_PX * len(labels)  # enough pixels per row


@pytest.mark.parametrize("layers, experts", SHAPES)
def test_step_experts_prints_each_layers_ranking(layers: int, experts: int) -> None:
    load, planted = planted_load(layers, experts)
    step = load[load["step"] == 4]
    fig = rfig.step_experts(step, 4, experts, highlight=planted[0][1])
    heat, outline = _spec(fig)["data"]
    assert list(heat["y"]) == [f"L{layer}" for layer in range(layers)]  # every layer, one row each
    assert list(heat["x"]) == [f"#{r}" for r in range(1, 9)] + ["other"]
    text = np.array(heat["text"])
    assert [row[0] for row in text] == [str(planted[layer][0]) for layer in range(layers)]
    assert [row[1] for row in text] == [str(planted[layer][1]) for layer in range(layers)]
    assert all(t.endswith("%") for t in text[:, -1])  # "other" states the share the rest took
    assert outline["y"][0] == "L0" and outline["x"][0] == "#2"  # the followed expert is outlined where it ranks
    assert fig.layout.title.text.startswith("Experts chosen in step 4")
    assert fig.layout.height >= rfig.ROW_PX * layers


def test_step_experts_without_other_when_all_fit() -> None:
    step = pd.DataFrame({"layer": [0, 0, 0], "expert": [0, 1, 2], "assignments": [3, 2, 1]})
    heat = _spec(rfig.step_experts(step, 0, num_experts=4))["data"][0]
    assert list(heat["x"]) == ["#1", "#2", "#3", "other"]  # expert 3 was not used: "other" (1 expert) took 0%
    heat = _spec(rfig.step_experts(step, 0, num_experts=3))["data"][0]
    assert list(heat["x"]) == ["#1", "#2", "#3"]


def _token_rows(layers: int, experts: int, tokens: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(tokens):
        for layer in range(layers):
            chosen = rng.choice(experts, size=8, replace=False).tolist()
            w = np.sort(rng.random(8))[::-1]
            rows.append({"token_index": 100 + t, "layer": layer, "experts": chosen, "weights": (w / w.sum()).tolist(),
                         "entropy": 2.0})
    toks = pd.DataFrame({"token_index": [100 + t for t in range(tokens)], "text": [f"tok{t}" for t in range(tokens)]})
    return toks, pd.DataFrame(rows)


@pytest.mark.parametrize("layers, experts", SHAPES)
def test_token_view_encodes_identity_as_text_not_colour(layers: int, experts: int) -> None:
    width = rfig.token_window(experts)
    assert width == (55 if experts == 16 else 41)  # as many columns as fit with 2- or 3-digit ids printed
    toks, rows = _token_rows(layers, experts, width)
    heat = _spec(rfig.token_expert_view(toks, rows, experts))["data"][0]
    z, text = np.array(heat["z"], dtype=float), np.array(heat["text"])
    first = rows.iloc[0]
    assert text[0, 0] == str(first["experts"][0]) and z[0, 0] == pytest.approx(first["weights"][0])
    assert np.nanmax(z) <= 1.0  # colour is a gate weight, never an expert id
    followed = int(first["experts"][2])
    heat = _spec(rfig.token_expert_view(toks, rows, experts, highlight=followed))["data"][0]
    z, text = np.array(heat["z"], dtype=float), np.array(heat["text"])
    chosen = np.array([[followed in e for e in rows[rows["layer"] == layer]["experts"]] for layer in range(layers)])
    assert (~np.isnan(z) == chosen).all()  # shaded exactly where the followed expert was in the top-k
    assert text[0, 0] == "3"  # its rank there


def test_specialization_groups_experts_by_the_group_they_prefer() -> None:
    """Planted: experts 0-2 prefer 'b', 3 prefers 'c', 4-5 prefer 'a' (6 experts, all shown): three blocks."""
    prefers = {0: "b", 1: "b", 2: "b", 3: "c", 4: "a", 5: "a"}
    strength = {0: 3.0, 1: 5.0, 2: 2.0, 3: 4.0, 4: 2.5, 5: 6.0}
    rows = [{"layer": 1, "group": g, "expert": e, "uniform": 1 / 6,
             "specialization": strength[e] if prefers[e] == g else 0.5, "share": 0.1}
            for e in prefers for g in ("a", "b", "c")]
    fig = rfig.specialization(pd.DataFrame(rows), 1, "domain")
    heat, dots = _spec(fig)["data"][:2]
    assert list(heat["y"]) == ["a", "b", "c"] and fig.layout.yaxis.autorange == "reversed"  # a on top
    assert list(heat["x"]) == ["E5", "E4", "E1", "E0", "E2", "E3"]  # blocks a, b, c; strongest first in each
    assert list(dots["x"]) == list(heat["x"]) and list(dots["y"]) == ["a", "a", "b", "b", "b", "c"]  # preferred
    assert [a.text for a in fig.layout.annotations] == ["a", "b", "c"]  # each block named above the plot
    lines = [sh.x0 for sh in fig.layout.shapes if sh.type == "line"]
    assert lines == [1.5, 4.5]  # between the blocks


@pytest.mark.parametrize("layers, experts", SHAPES)
def test_all_layers_summary_ranks_each_layers_experts(layers: int, experts: int) -> None:
    """Planted: in every odd layer expert 5 takes half the assignments; the rest share the other half evenly."""
    from horizonlens.figures import insight as ifig

    rows = []
    for layer in range(layers):
        for e in range(experts):
            busy = layer % 2 == 1
            share = (0.5 if e == 5 else 0.5 / (experts - 1)) if busy else 1 / experts
            rows.append({"layer": layer, "expert": e, "share": share})
    heat = _spec(ifig.layer_expert_summary(pd.DataFrame(rows), experts))["data"][0]
    z = np.asarray(heat["z"], dtype=float)
    assert z.shape == (layers, experts) and list(heat["x"]) == list(range(1, experts + 1))  # ranks, any E
    assert np.allclose(z[0], 0)  # a balanced layer: 1x uniform at every rank
    assert z[1, 0] == pytest.approx(np.log2(min(8, 0.5 * experts)))  # the busy expert first, saturating at 8x
    assert "rank 1: E5" in heat["customdata"][1][0]  # hover names it
    assert (np.diff(z, axis=1) <= 1e-12).all()  # each row falls from the busiest to the least used


@pytest.mark.parametrize("layers, experts", SHAPES)
def test_specialization_and_coactivation_fold_at_256(layers: int, experts: int) -> None:
    rng = np.random.default_rng(2)
    groups = ["reasoning", "tool_call", "observation"]
    share = rng.dirichlet(np.ones(experts), size=len(groups))
    load = pd.DataFrame([{"layer": 0, "group": g, "expert": e, "share": share[i, e], "uniform": 1 / experts,
                          "specialization": share[i, e] * experts} for i, g in enumerate(groups)
                         for e in range(experts)])
    heat = _spec(rfig.specialization(load, 0, "segment"))["data"][0]
    if experts == 16:
        assert len(heat["x"]) == 16
    else:
        assert len(heat["x"]) == 25 and heat["x"][-1] == "other (232)"
        shown = [int(x[1:]) for x in heat["x"][:-1]]
        rest = share[0, [e for e in range(experts) if e not in shown]].sum()  # share[0]: reasoning
        row = list(heat["y"]).index("reasoning")
        assert heat["customdata"][row][-1] == pytest.approx(rest / (232 / 256))
    assert heat["zmin"] == -rfig.SPEC_LOG2_MAX and heat["zmax"] == rfig.SPEC_LOG2_MAX  # log2, symmetric at 1x
    pairs = [{"i": i, "j": j, "n_ij": 1 + (i + j) % 5, "n_i": 100 + (experts - i), "rate": 0.1}
             for i in range(experts) for j in range(experts) if i != j]
    co = _spec(rfig.coactivation_matrix(pd.DataFrame(pairs), experts, 0))["data"][0]
    assert len(co["x"]) == min(experts, 24)
    assert set(co["x"]) == {f"E{e}" for e in range(min(experts, 24))}  # the busiest: lowest ids have most n_i
