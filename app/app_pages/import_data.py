"""Import: upload agent logs and convert them into the current corpus (or a new one)."""

from __future__ import annotations

import streamlit as st

from horizonlens.app import auth, state, ui
from horizonlens.errors import HorizonLensError
from horizonlens.ingest import FORMATS
from horizonlens.ingest.targets import MAX_UPLOAD_FILES, MAX_UPLOAD_MB, UPLOAD_ROOT
from horizonlens.ingest.uploads import Upload, import_uploads
from horizonlens.sample.bundled import data_home
from horizonlens.storage.access import Permission

if not auth.can(Permission.IMPORT):  # the page is not offered then; a stale link gets this
    st.error("Importing needs an editor's account on this server.")
    st.stop()
st.title("Import trajectories")
st.markdown("Upload logs in any supported format; they are converted into the corpus format and added to a corpus. "
            "Re-importing the same file does not duplicate it. "
            f"At most {MAX_UPLOAD_FILES} files and {MAX_UPLOAD_MB} MB per import (the server takes no larger "
            "upload); for more use `horizonlens import PATH... --into CORPUS` (it streams in bounded memory).")
formats_box = st.expander("Supported formats", key="import_formats_open", on_change="rerun")
if formats_box.open:
    for source_format in FORMATS:
        formats_box.markdown(f"- **{ui.md(source_format.name)}** — {ui.md(source_format.description)}")
uploads = st.file_uploader("Files (.json, .jsonl, .traj, .eval, .parquet)", accept_multiple_files=True,
                           key="import_files", max_upload_size=MAX_UPLOAD_MB,
                           help=f"Up to {MAX_UPLOAD_FILES} files, {MAX_UPLOAD_MB} MB in all.")
c = st.columns([3, 2, 1, 1, 1])
target = c[0].text_input("Into corpus", value=state.corpus_path(), key="import_target",
                         help="The current corpus, or a new folder: a name (created beside the current corpus), "
                              f"or a path under {data_home() / UPLOAD_ROOT}.")
agent = c[1].text_input("Agent", key="import_agent", placeholder="e.g. gpt-4o",
                        help="The model or policy that produced these runs, for every record that does not name "
                             "its own. It goes into the run ids, so two models' runs of the same task both stay.")
fmt = c[2].selectbox("Format", ["auto", *[f.name for f in FORMATS]], key="import_format")
replace = c[3].toggle("Replace existing", key="import_replace")
strict = c[4].toggle("Strict", key="import_strict", help="Import nothing if any record is malformed.")
if st.button("Import", type="primary", disabled=not uploads, key="import_go"):
    try:
        with st.spinner("Importing…"):
            report = import_uploads([Upload(up.name, up.getbuffer()) for up in uploads or []], target,
                                    state.corpus_path(), data_home(), fmt=fmt, replace=replace, strict=strict,
                                    agent=agent or None)
    except HorizonLensError as exc:
        st.error(ui.md(exc))
        st.stop()
    st.success(ui.md(report.summary))
    for notice in report.notices:
        st.info(ui.md(notice))
    for problem in report.problems:
        st.warning(ui.md(problem))
    state.clear_query_cache()
    name = state.open_corpus(str(report.into))  # the corpus written, named in the URL from now on
    st.page_link("app_pages/explore.py", label=f"Browse {ui.md(name or 'the corpus')}", icon=":material/folder_open:",
                 query_params={"corpus": name} if name else None)
