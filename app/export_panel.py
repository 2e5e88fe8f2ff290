"""The Explore page's "Export selection" action: the current filter's runs as training data, offered for download."""

from __future__ import annotations

import streamlit as st

from horizonlens.app import state, ui
from horizonlens.errors import HorizonLensError
from horizonlens.export import FORMATS, TRUNCATE_AT, ExportOptions
from horizonlens.export.downloads import MAX_APP_RUNS, MAX_DOWNLOAD_BYTES, ExportDownload, export_selection
from horizonlens.figures import formatting
from horizonlens.query import CorpusStore, TrajectoryFilter
from horizonlens.sample.bundled import data_home

FORMAT_LABELS = {"openai-jsonl": "OpenAI chat JSONL", "sharegpt": "ShareGPT (LLaMA-Factory)",
                 "hf-parquet": "Hugging Face Parquet"}

TRUNCATE_LABELS = {"none": "nothing (whole runs)", "first-failed-check": "its first failed check",
                   "decisive": "its annotated decisive step"}


def render(store: CorpusStore, flt: TrajectoryFilter, total: int) -> None:
    """Options, an export button for the `total` runs the filter selects, and the download of the last export."""
    box = st.expander(f"Export selection ({total:,} runs) as training data", icon=":material/download:",
                      key="export_open", on_change="rerun")
    with box:
        if not box.open:  # its options are sent only once it is opened
            return
        c = st.columns(3)
        fmt = c[0].selectbox("Format", list(FORMATS), format_func=lambda f: FORMAT_LABELS[f], key="export_format")
        truncate = c[1].selectbox("Cut each run before", list(TRUNCATE_AT), key="export_truncate",
                                  format_func=lambda t: TRUNCATE_LABELS[t])
        checkpoint = state.checkpoint_path() or None
        max_tokens = c[2].number_input("Max tokens (0: no limit)", 0, 10_000_000, 0, step=1024, key="export_max",
                                       disabled=checkpoint is None,
                                       help="Counted with the sidebar's checkpoint: its tokenizer and chat template "
                                            "(set a checkpoint in the sidebar to use this).")
        t = st.columns(4)
        only_success = t[0].toggle("Only successful runs", key="export_success")
        best = t[1].toggle("Best run per task", key="export_best",
                           help="One run per task: the best by outcome, then reward, then fewest steps.")
        dedupe = t[2].toggle("Drop duplicate conversations", key="export_dedupe")
        redact = t[3].toggle("Redact secrets", value=True, key="export_redact",
                             help="Replace API keys, bearer tokens and e-mail addresses in every text.")
        st.caption(f"The app exports at most {MAX_APP_RUNS:,} runs and offers up to "
                   f"{MAX_DOWNLOAD_BYTES // 2**20} MB for download; for more use `horizonlens export` "
                   "(docs/export.md).")
        if st.button(f"Export {total:,} runs", key="export_go", type="primary", disabled=total == 0):
            options = ExportOptions(format=str(fmt), filter=flt, only_success=only_success, truncate_at=str(truncate),
                                    best_of_task=best, dedupe=dedupe, max_tokens=int(max_tokens) or None,
                                    checkpoint=checkpoint if max_tokens else None, default_redactions=redact)
            try:
                with st.spinner("Exporting…"):
                    st.session_state["export_last"] = (flt, export_selection(store, options, data_home() / "exports"))
            except HorizonLensError as exc:
                ui.show_error(exc)
                st.session_state.pop("export_last", None)
        last = st.session_state.get("export_last")
        if last is not None and last[0] == flt:  # an export of another filter's runs is not offered here
            _offer(last[1])


def _offer(done: ExportDownload | None) -> None:
    if done is None:
        return
    report = done.report
    st.success(ui.md(report.summary(where=False)))
    for problem in report.problems[:10]:
        st.caption(ui.md(f"{problem['action']}: {problem['trajectory_id']}: {problem['reason']} — {problem['detail']}"))
    if done.zip_bytes is None:
        st.warning(ui.md(f"The export is larger than {MAX_DOWNLOAD_BYTES // 2**20} MB; it stays on the server "
                         f"(exports/{report.target.name} in the Horizon Lens data folder)."))
        return
    st.download_button(f"Download {done.zip_name} ({formatting.size(len(done.zip_bytes))})", done.zip_bytes,
                       file_name=done.zip_name, mime="application/zip", key="export_download",
                       icon=":material/download:")
