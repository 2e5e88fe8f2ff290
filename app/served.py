"""The app as `horizonlens serve` runs it: Streamlit's `st.App` with a Host check and the folder watchers.

`streamlit run served.py` finds the `app` below and serves it with uvicorn. Around the pages (main.py) it adds:

- a Host check on every request, HTTP and websocket alike, before Streamlit sees it: a request naming a
  host this server does not serve (DNS rebinding) is answered 400 and never reaches a session;
- the watchers of `serve --watch DIR`, started with the server and stopped with it.

With `serve --floor` (FLOOR_ENV set) the same server serves the hello-world page (floor.py) instead of the app.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from horizonlens.app.live import HostGuard, lifespan, secrets
from horizonlens.server.config import FLOOR_ENV

SCRIPT = "floor.py" if os.environ.get(FLOOR_ENV) else "main.py"

app = st.App(str(Path(__file__).with_name(SCRIPT)), middleware=[Middleware(HostGuard)], lifespan=lifespan,
             secrets=secrets())
