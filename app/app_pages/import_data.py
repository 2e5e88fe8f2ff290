"""Import: upload agent logs and convert them into the current corpus (or a new one)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from horizonlens.app import state, ui
from horizonlens.errors import HorizonLensError
from horizonlens.ingest import FORMATS, import_paths
from horizonlens.ingest.targets import (
    MAX_UPLOAD_FILES,
    MAX_UPLOAD_MB,
    UPLOAD_ROOT,
    check_uploads,
    upload_target,
)
from horizonlens.sample.bundled import data_home
from horizonlens.storage import as_location

st.title("Import trajectories")
st.markdown("Upload logs in any supported format; they are converted into the corpus format and added to a corpus. "
            "Re-importing the same file does not duplicate it. "
            f"At most {MAX_UPLOAD_FILES} files and {MAX_UPLOAD_MB} MB per import (the server takes no larger "
            "upload); for more use `horizonlens import PATH... --into CORPUS` (it streams in bounded memory).")
with st.expander("Supported formats"):
    for fmt in FORMATS:
        st.markdown(f"- **{ui.md(fmt.name)}** — {ui.md(fmt.description)}")
uploads = st.file_uploader("Files (.json, .jsonl, .traj, .eval)", accept_multiple_files=True, key="import_files",
                           max_upload_size=MAX_UPLOAD_MB,
                           help=f"Up to {MAX_UPLOAD_FILES} files, {MAX_UPLOAD_MB} MB in all.")
c = st.columns([3, 1, 1, 1])
target = c[0].text_input("Into corpus", value=state.corpus_path(), key="import_target",
                         help="The current corpus, or a new folder: a name (created beside the current corpus), "
                              f"or a path under {data_home() / UPLOAD_ROOT}.")
fmt = c[1].selectbox("Format", ["auto", *[f.name for f in FORMATS]], key="import_format")
replace = c[2].toggle("Replace existing", key="import_replace")
strict = c[3].toggle("Strict", key="import_strict", help="Import nothing if any record is malformed.")
if st.button("Import", type="primary", disabled=not uploads, key="import_go"):
    try:
        check_uploads([up.size for up in uploads or []])
        into = upload_target(target, state.corpus_path(), data_home())
    except HorizonLensError as exc:
        st.error(ui.md(str(exc)))
        st.stop()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, up in enumerate(uploads or []):
            dest = Path(tmp) / f"{i:03d}-{Path(up.name).name}"  # keep the suffix; never trust the path part
            dest.write_bytes(up.getbuffer())
            paths.append(dest)
        try:
            with st.spinner("Importing…"):
                report = import_paths(paths, into, fmt=fmt, replace=replace, strict=strict)
        except HorizonLensError as exc:
            st.error(ui.md(str(exc).replace(tmp + "/", "")))
        else:
            st.success(ui.md(report.summary()))
            for notice in report.notices[:100]:
                st.info(ui.md(str(notice).replace(tmp + "/", "")))
            for problem in report.problems[:100]:
                st.warning(ui.md(str(problem).replace(tmp + "/", "")))
            if len(report.problems) > 100:
                st.warning(f"… and {len(report.problems) - 100} more problems")
            state.clear_query_cache()
            if str(into) != str(as_location(state.corpus_path())):
                st.session_state["corpus_path"] = str(into)
            st.page_link("app_pages/explore.py", label="Browse the corpus", icon="🗂️")
