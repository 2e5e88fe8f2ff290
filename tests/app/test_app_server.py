"""The team server's pages in AppTest: sign-in first, what each role is offered, and `?corpus=` in the URL."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from horizonlens.server import config as server_config
from horizonlens.server.users import add_user, remove_user
from tests.support.app import MAIN, shown
from tests.support.corpora import TINY_RUN

PASSWORDS = {"alice": "alice's long password", "bob": "bob's long password"}


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> Path:
    """Two corpora (alpha, beta) in one folder, and a users file with an editor and a viewer."""
    root = tmp_path_factory.mktemp("team")
    for name in ("alpha", "beta"):
        shutil.copytree(tiny_corpus, root / "corpora" / name)
    add_user(root / "users.toml", "alice", "editor", PASSWORDS["alice"])
    add_user(root / "users.toml", "bob", "viewer", PASSWORDS["bob"])
    return root


LABEL_TABS = ("Add a label", "Edit or delete", "Export all labels")


def server_app(monkeypatch: pytest.MonkeyPatch, team: Path, page: str | None = None, **params: str) -> AppTest:
    cfg = server_config.build([str(team / "corpora")], "127.0.0.1", auth=team / "users.toml")
    monkeypatch.setenv(server_config.ENV, cfg.to_env())
    monkeypatch.setenv("HORIZONLENS_CORPUS", cfg.registry().default.location)
    monkeypatch.setenv("HORIZONLENS_CHECKPOINT", "")
    at = AppTest.from_file(MAIN, default_timeout=120)
    if page:
        at.switch_page(f"app_pages/{page}.py")
    for k, v in params.items():
        at.query_params[k] = v
    return at


def sign_in(at: AppTest, name: str, password: str | None = None) -> AppTest:
    at.text_input(key="auth_user").input(name)
    at.text_input(key="auth_password").input(PASSWORDS.get(name, "") if password is None else password)
    next(b for b in at.button if b.label == "Sign in").click()
    return at.run()


def everything_rendered(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "title", "error", "info", "code") for e in getattr(at, kind)]
    parts += [str(e.value) for e in at.dataframe] + [e.label for e in at.button]
    return "\n".join(parts)


def test_signed_out_sessions_see_only_the_form(monkeypatch, team: Path) -> None:
    at = server_app(monkeypatch, team, page="trajectory", trajectory=TINY_RUN, corpus="alpha").run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["User", "Password"]
    text = everything_rendered(at)
    for data in ("search-00000", "tool_calling", "alpha", "beta", "Trajectory", "Explore"):
        assert data not in text, data
    assert not at.sidebar.selectbox and not at.dataframe and not at.metric
    sign_in(at, "bob", "not the password")
    assert [shown(e.value) for e in at.error] == ["Sign-in failed: unknown user or wrong password."]
    sign_in(at, "mallory", "any password")  # an unknown name gets the very same answer
    assert [shown(e.value) for e in at.error] == ["Sign-in failed: unknown user or wrong password."]
    # the deep link survives sign-in: the trajectory asked for, in the corpus asked for
    sign_in(at, "bob")
    assert not at.error and any("Step" in m.value for m in at.markdown)
    assert at.query_params["corpus"] == "alpha" and at.query_params["trajectory"] == TINY_RUN


def test_repeated_failures_are_locked_out(monkeypatch, team: Path) -> None:
    at = server_app(monkeypatch, team).run()
    for _ in range(5):
        sign_in(at, "carol", "guess")
    sign_in(at, "carol", "guess")
    assert any("Too many failed sign-ins" in e.value for e in at.error)


def test_a_viewer_is_offered_reading_only(monkeypatch, team: Path) -> None:
    at = sign_in(server_app(monkeypatch, team, page="trajectory", trajectory=TINY_RUN).run(), "bob")
    assert not at.exception
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert "Signed in as" in sidebar and "viewer" in sidebar
    assert at.sidebar.selectbox(key="sidebar_corpus_pick").options == ["alpha", "beta"]
    assert not [t for t in at.sidebar.text_input if t.key in ("sidebar_corpus_input", "sidebar_ckpt_input")]
    assert "Adding, editing and exporting labels needs an editor" in " ".join(c.value for c in at.caption)
    assert not [t for t in at.tabs if t.label in LABEL_TABS]  # no label forms
    # the corpus chosen in the sidebar goes into the URL
    at.sidebar.selectbox(key="sidebar_corpus_pick").select("beta").run()
    assert at.query_params["corpus"] == "beta"


def test_a_viewer_cannot_reach_import_by_url_or_a_folder_by_session(monkeypatch, team: Path, tmp_path: Path,
                                                                   tiny_corpus: Path) -> None:
    at = sign_in(server_app(monkeypatch, team).run(), "bob")
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not registered for a viewer
        at.switch_page("app_pages/import_data.py")
    # a folder that is not served, even placed in the session by hand, is refused by the core
    other = shutil.copytree(tiny_corpus, tmp_path / "private" / "secret")
    at.session_state["corpus_path"] = str(other)
    del at.query_params["corpus"]  # else the URL's corpus wins
    at.switch_page("app_pages/explore.py").run()
    assert any("viewers choose among the corpora this server serves" in shown(e.value) for e in at.error)
    assert not at.dataframe


def test_an_editor_is_offered_writing(monkeypatch, team: Path) -> None:
    at = sign_in(server_app(monkeypatch, team, page="trajectory", trajectory=TINY_RUN).run(), "alice")
    assert not at.exception
    assert at.sidebar.text_input(key="sidebar_corpus_input").value == ""
    assert [t.label for t in at.tabs if t.label in LABEL_TABS] == list(LABEL_TABS)
    at.text_input(key="labels_add_label").input("wrong flight")
    next(b for b in at.button if b.label == "Add label").click().run()
    assert any("Label added" in s.value for s in at.success)


def test_unknown_corpus_in_the_url(monkeypatch, team: Path) -> None:
    at = sign_in(server_app(monkeypatch, team, corpus="gamma").run(), "bob")
    assert any("no corpus named 'gamma' is served here" in shown(e.value) for e in at.error)
    assert not at.dataframe
    at.sidebar.selectbox(key="sidebar_corpus_pick").select("alpha").run()
    assert not at.error and at.query_params["corpus"] == "alpha"


def test_a_removed_user_is_signed_out_and_a_new_role_takes_effect(monkeypatch, team: Path) -> None:
    users = team / "users.toml"
    add_user(users, "dave", "viewer", "dave's long password")
    PASSWORDS["dave"] = "dave's long password"
    at = sign_in(server_app(monkeypatch, team).run(), "dave")
    assert "viewer" in " ".join(c.value for c in at.sidebar.caption)
    add_user(users, "dave", "editor", "dave's long password", replace=True)
    at.run()
    assert "editor" in " ".join(c.value for c in at.sidebar.caption)
    remove_user(users, "dave")
    at.run()
    assert [t.label for t in at.text_input] == ["User", "Password"]


def test_identity_provider_sign_in_is_offered(monkeypatch, team: Path, tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    users.write_text((team / "users.toml").read_text() + '\n[oidc]\nprovider = "corp"\nviewers = ["*@example.com"]\n')
    users.chmod(0o600)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\ncookie_secret = "' + "s" * 40
                       + '"\n[auth.corp]\nclient_id = "i"\nclient_secret = "s"\n'
                       'server_metadata_url = "https://idp.example.com/.well-known/openid-configuration"\n')
    secrets.chmod(0o600)
    pytest.importorskip("authlib")
    cfg = server_config.build([str(team / "corpora")], "127.0.0.1", auth=users, secrets=secrets)
    monkeypatch.setenv(server_config.ENV, cfg.to_env())
    monkeypatch.setenv("HORIZONLENS_CORPUS", cfg.registry().default.location)
    at = AppTest.from_file(MAIN, default_timeout=120).run()
    assert "Sign in with corp" in [b.label for b in at.button]
    assert sign_in(at, "bob") and "viewer" in " ".join(c.value for c in at.sidebar.caption)  # passwords still work
