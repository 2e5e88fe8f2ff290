"""The app as `horizonlens serve` runs it: Streamlit's `st.App` with a Host check and the folder watchers.

`streamlit run served.py` finds the `app` below and serves it with uvicorn. Around the pages (main.py) it adds:

- a Host check on every request, HTTP and websocket alike, before Streamlit sees it: a request naming a
  host this server does not serve (DNS rebinding) is answered 400 and never reaches a session;
- the watchers of `serve --watch DIR`, started with the server and stopped with it.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from horizonlens.app.live import HostGuard, lifespan, secrets

app = st.App(str(Path(__file__).with_name("main.py")), middleware=[Middleware(HostGuard)], lifespan=lifespan,
             secrets=secrets())
