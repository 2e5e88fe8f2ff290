"""Import: upload agent logs and convert them into the current corpus (or a new one)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from horizonlens.app import state, ui
from horizonlens.corpus import as_location
from horizonlens.corpus.importers import FORMATS, import_paths
from horizonlens.errors import HorizonLensError

st.title("Import trajectories")
st.markdown("Upload logs in any supported format; they are converted into the corpus format and added to a corpus. "
            "Re-importing the same file does not duplicate it. For files larger than the upload limit use "
            "`horizonlens import PATH... --into CORPUS` (it streams in bounded memory).")
with st.expander("Supported formats"):
    for fmt in FORMATS:
        st.markdown(f"- **{fmt.name}** — {fmt.description}")
uploads = st.file_uploader("Files (.json, .jsonl, .traj, .eval)", accept_multiple_files=True, key="import_files")
c = st.columns([3, 1, 1, 1])
target = c[0].text_input("Into corpus", value=state.corpus_path(), key="import_target",
                         help="An existing corpus is appended to; a new directory is created as a corpus.")
fmt = c[1].selectbox("Format", ["auto", *[f.name for f in FORMATS]], key="import_format")
replace = c[2].toggle("Replace existing", key="import_replace")
strict = c[3].toggle("Strict", key="import_strict", help="Import nothing if any record is malformed.")
if st.button("Import", type="primary", disabled=not uploads, key="import_go"):
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, up in enumerate(uploads or []):
            dest = Path(tmp) / f"{i:03d}-{Path(up.name).name}"  # keep the suffix; never trust the path part
            dest.write_bytes(up.getvalue())
            paths.append(dest)
        try:
            with st.spinner("Importing…"):
                report = import_paths(paths, target, fmt=fmt, replace=replace, strict=strict)
        except HorizonLensError as exc:
            st.error(ui.md(str(exc)))
        else:
            st.success(report.summary())
            for problem in report.problems[:100]:
                st.warning(ui.md(str(problem).replace(tmp + "/", "")))
            state.clear_query_cache()
            if str(as_location(target).resolve()) != str(as_location(state.corpus_path()).resolve()):
                st.session_state["corpus_path"] = target
            st.page_link("app_pages/explore.py", label="Browse the corpus", icon="🗂️")
