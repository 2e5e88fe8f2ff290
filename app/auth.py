"""Sign-in on a team server, and who the current session acts as (docs/security.md, "The team server").

Every write in the core checks the acting principal (horizonlens.storage.access); this module tells the
core who that is for each Streamlit session, and keeps a session that has not signed in on the sign-in
form: no page script, hence no corpus data, runs before it.
"""

from __future__ import annotations

import math
import os
import time

import streamlit as st

from horizonlens.app import live
from horizonlens.errors import HorizonLensError
from horizonlens.server.throttle import FAIL_PAUSE_S, SignInThrottle
from horizonlens.server.users import UsersFile, check_credentials, load_users
from horizonlens.storage import access
from horizonlens.storage.access import NOBODY, Permission, Principal

KEY = "auth_principal"  # session state: the signed-in Principal (never a widget key, so no client can set it)
SOURCE = "auth_source"  # "password" or "oidc"
REFUSED = "Sign-in failed: unknown user or wrong password."


def install() -> None:
    """Tell the core how to find a session's principal (idempotent; every run calls it)."""
    access.install_resolver(_session_principal)


def _session_principal() -> Principal | None:
    """The principal of the session the current thread runs for (None outside any session)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    return principal()


def principal() -> Principal:
    """Who this session acts as: the signed-in user, nobody before sign-in, or the server's open principal."""
    cfg = live.config()
    if not cfg.signs_in:
        return cfg.open_principal
    return st.session_state.get(KEY) or NOBODY


def can(permission: Permission) -> bool:
    """Whether this session may do `permission` (what a page asks before offering an action)."""
    return principal().can(permission)


@st.cache_resource(show_spinner=False)
def _throttle() -> SignInThrottle:
    return SignInThrottle()  # one per process: failures count across sessions


@st.cache_resource(max_entries=4, show_spinner=False)
def _users(path: str, stamp: tuple[int, int, int]) -> UsersFile:  # the stamp keys a re-read
    return load_users(path)


def users() -> UsersFile:
    """The users file, read again whenever it changes (`users add|remove` takes effect without a restart)."""
    cfg = live.config()
    assert cfg.auth is not None
    st_ = os.stat(cfg.auth)
    return _users(cfg.auth, (st_.st_ino, st_.st_size, st_.st_mtime_ns))


def gate() -> bool:
    """True if this session may see the app; else the sign-in form is drawn and False returned."""
    cfg = live.config()
    if not cfg.signs_in:
        return True
    try:
        accounts = users()
    except (HorizonLensError, OSError) as exc:
        st.error(f"This server's users file cannot be used: {exc}. Ask its administrator.")
        return False
    current = _recheck(accounts, st.session_state.get(KEY))
    if current is not None:
        return True
    _form(accounts)
    return False


def _recheck(accounts: UsersFile, who: Principal | None) -> Principal | None:
    """The session's principal as the users file says now: a removed user is signed out, a changed role follows."""
    if accounts.oidc is not None and st.session_state.get(SOURCE) != "password" and _oidc_signed_in():
        email = st.user.get("email")
        role = accounts.oidc.role_of(email if isinstance(email, str) else None)
        if role is None:
            st.session_state.pop(KEY, None)
            return None
        who = Principal.of_role(str(st.user.get("email")), role)
        st.session_state[KEY], st.session_state[SOURCE] = who, "oidc"
        return who
    if who is None or st.session_state.get(SOURCE) != "password":
        st.session_state.pop(KEY, None)
        return None
    user = accounts.users.get(who.name)
    if user is None:
        st.session_state.pop(KEY, None)
        return None
    if user.role != who.role:
        who = Principal.of_role(user.name, user.role)
        st.session_state[KEY] = who
    return who


def _oidc_signed_in() -> bool:
    try:
        return bool(st.user.is_logged_in)
    except Exception:  # noqa: BLE001 - no auth configured in this process: nobody is signed in that way
        return False


def _form(accounts: UsersFile) -> None:
    with st.columns([1, 1.2, 1])[1]:
        _form_body(accounts)


def _form_body(accounts: UsersFile) -> None:
    st.title(":material/biotech: Horizon Lens")
    st.markdown("This server asks you to sign in.")
    with st.form("auth_form", clear_on_submit=True, border=True):
        name = st.text_input("User", key="auth_user", max_chars=64, autocomplete="username")
        password = st.text_input("Password", type="password", key="auth_password", max_chars=1024,
                                 autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        _attempt(accounts, name or "", password or "")
    if accounts.oidc is not None:
        if _oidc_signed_in():  # signed in with the provider, but the address has no role here
            st.error("Your account may not use this server. Ask its administrator.")
            st.button("Sign out of the identity provider", on_click=st.logout, key="auth_oidc_out")
        else:
            provider = accounts.oidc.provider
            st.button(f"Sign in with {provider or 'your identity provider'}", key="auth_oidc",
                      on_click=st.login, args=(provider,) if provider else ())


def _attempt(accounts: UsersFile, name: str, password: str) -> None:
    throttle = _throttle()
    address = st.context.ip_address
    wait = throttle.wait_s(name, address)
    if wait > 0:
        st.error(f"Too many failed sign-ins. Try again in {math.ceil(wait)} s.")
        return
    user = check_credentials(accounts, name, password) if name and password else None
    if user is None:
        throttle.failed(name, address)
        time.sleep(FAIL_PAUSE_S)  # blocks this session's run only; guessing gets slow
        st.error(REFUSED)
        return
    throttle.succeeded(name)
    st.session_state[KEY] = Principal.of_role(user.name, user.role)
    st.session_state[SOURCE] = "password"
    st.rerun()


def account_box() -> None:
    """The sidebar's line about who is signed in, with a sign-out button (team servers only)."""
    cfg = live.config()
    who = principal()
    if not cfg.signs_in:
        if cfg.insecure_no_auth:
            st.caption("No sign-in on this server: everyone who reaches it is an editor.")
        return
    from horizonlens.app.ui import md

    st.caption(f"Signed in as **{md(who.name)}** · {who.role}")
    if st.button("Sign out", key="auth_sign_out", icon=":material/logout:", type="tertiary"):
        source = st.session_state.pop(SOURCE, None)
        st.session_state.pop(KEY, None)
        if source == "oidc":
            st.logout()
        st.rerun()
