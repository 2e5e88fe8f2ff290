"""The team server's rules without a server: users file, passwords, throttle, Host names, served corpora, exposure."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from horizonlens.cli import app
from horizonlens.errors import AccessDenied, CorpusError, ServerConfigError
from horizonlens.server import config as server_config
from horizonlens.server.corpora import CorpusRegistry, ServedCorpus
from horizonlens.server.hosts import allowed_hosts, host_allowed, host_name, is_loopback
from horizonlens.server.throttle import (
    FIRST_LOCK_S,
    FORGET_S,
    FREE_FAILURES,
    FREE_FAILURES_ADDRESS,
    MAX_LOCK_S,
    SignInThrottle,
)
from horizonlens.server.users import (
    OidcRoles,
    add_user,
    check_credentials,
    hash_password,
    list_users,
    load_users,
    remove_user,
    verify_password,
)
from horizonlens.storage.access import OWNER, Principal

runner = CliRunner()
VIEWER = Principal.of_role("val", "viewer")
EDITOR = Principal.of_role("eve", "editor")


# --- users file ------------------------------------------------------------------------------------
def test_users_round_trip_stores_only_salted_hashes(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    add_user(path, "alice", "editor", "correct horse")
    add_user(path, "bob", "viewer", "correct horse")
    assert os.stat(path).st_mode & 0o777 == 0o600
    text = path.read_text()
    assert "correct horse" not in text
    users = load_users(path)
    assert {u.name: u.role for u in users.users.values()} == {"alice": "editor", "bob": "viewer"}
    # the same password twice gives two different hashes (salted), each verifying only that password
    a, b = users.users["alice"].password_hash, users.users["bob"].password_hash
    assert a != b and verify_password(a, "correct horse") and not verify_password(a, "correct horsE")
    assert check_credentials(users, "alice", "correct horse").role == "editor"
    assert check_credentials(users, "alice", "wrong password") is None
    assert check_credentials(users, "mallory", "correct horse") is None
    remove_user(path, "bob")
    assert [u.name for u in list_users(path)] == ["alice"]
    with pytest.raises(ServerConfigError, match="no user 'bob'"):
        remove_user(path, "bob")


def test_add_refuses_duplicates_short_passwords_and_bad_names(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    add_user(path, "alice", "viewer", "first password")
    with pytest.raises(ServerConfigError, match="--replace"):
        add_user(path, "alice", "editor", "second password")
    add_user(path, "alice", "editor", "second password", replace=True)
    users = load_users(path)
    assert users.users["alice"].role == "editor" and check_credentials(users, "alice", "second password")
    for name in ("", "a b", "../x", "x" * 65, '"quoted"'):
        with pytest.raises(ServerConfigError, match="user name"):
            add_user(path, name, "viewer", "long enough")
    with pytest.raises(ServerConfigError, match="at least 8"):
        add_user(path, "carl", "viewer", "short")
    with pytest.raises(ServerConfigError, match="role 'admin'"):
        add_user(path, "carl", "admin", "long enough")


def test_adding_users_keeps_the_oidc_section(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    add_user(path, "alice", "editor", "long enough")
    with path.open("a") as fh:
        fh.write('\n[oidc]\nprovider = "google"\neditors = ["alice@example.com"]\nviewers = ["*@example.com"]\n')
    add_user(path, "bob", "viewer", "long enough")
    oidc = load_users(path).oidc
    assert oidc == OidcRoles("google", ("alice@example.com",), ("*@example.com",))
    assert oidc.role_of("Alice@Example.com") == "editor"
    assert oidc.role_of("carol@example.com") == "viewer"
    assert oidc.role_of("carol@example.com.evil.org") is None
    assert oidc.role_of(None) is None


BAD_FILES = [
    ("users = 3", "must be a table"),
    ("[users.alice]\nrole = 'editor'\n", "exactly `role` and `password`"),
    ("[users.alice]\nrole = 'root'\npassword = 'x'\n", "role 'root'"),
    ("[users.alice]\nrole = 'editor'\npassword = 'plaintext'\n", "not a scrypt hash"),
    ("[users.alice]\nrole = 'editor'\npassword = 'scrypt$3$8$1$AAAA$AAAA'\n", "out of range"),
    ("[admins]\n", "unknown section"),
    ("[users\n", "not valid TOML"),
    ("", "has no users"),
    ("[oidc]\neditors = ['not an address']\n", "e-mail addresses"),
    ("[oidc]\n", "nobody may sign in"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_malformed_users_files_are_refused_with_a_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "users.toml"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ServerConfigError, match=message):
        load_users(path)


def test_users_file_permissions_and_kind(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    add_user(path, "alice", "editor", "long enough")
    for mode in (0o640, 0o604, 0o660):
        path.chmod(mode)
        with pytest.raises(ServerConfigError, match="chmod 600"):
            load_users(path)
    path.chmod(0o600)
    with pytest.raises(ServerConfigError, match="does not exist"):
        load_users(tmp_path / "missing.toml")
    with pytest.raises(ServerConfigError, match="not a regular file"):
        (tmp_path / "dir").mkdir(mode=0o700)
        load_users(tmp_path / "dir")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[users]")
    (tmp_path / "bin.toml").chmod(0o600)
    with pytest.raises(ServerConfigError, match="not UTF-8"):
        load_users(tmp_path / "bin.toml")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_users_file(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    add_user(path, "alice", "editor", "long enough")
    path.chmod(0o000)
    with pytest.raises(ServerConfigError, match="cannot be read"):
        load_users(path)


def test_password_hash_checks_its_parameters() -> None:
    stored = hash_password("long enough")
    assert stored.startswith("scrypt$32768$8$3$")
    assert not verify_password(stored, "x" * 5000)  # refused before hashing
    with pytest.raises(ValueError):
        verify_password("scrypt$65535$8$1$AAAA$AAAA", "long enough")  # n not a power of two


# --- throttle --------------------------------------------------------------------------------------
def test_throttle_locks_out_after_free_failures_and_doubles() -> None:
    now = [0.0]
    throttle = SignInThrottle(clock=lambda: now[0])
    for _ in range(FREE_FAILURES - 1):
        throttle.failed("alice", "10.0.0.1")
        assert throttle.wait_s("alice", "10.0.0.1") == 0
    throttle.failed("Alice ", "10.0.0.1")  # the name is case-folded and trimmed: the same counter
    assert throttle.wait_s("alice", None) == FIRST_LOCK_S
    assert throttle.wait_s("someone-else", "10.0.0.1") == 0  # the address is not locked out yet
    throttle.failed("alice", "10.0.0.1")
    assert throttle.wait_s("alice", None) == 2 * FIRST_LOCK_S
    for _ in range(20):
        throttle.failed("alice", "10.0.0.1")
    assert throttle.wait_s("alice", None) == MAX_LOCK_S
    assert throttle.wait_s("someone-else", "10.0.0.1") == FIRST_LOCK_S * 2  # 26 failures from the address
    assert throttle.wait_s("someone-else", "10.0.0.2") == 0
    now[0] += MAX_LOCK_S
    assert throttle.wait_s("alice", None) == 0
    throttle.succeeded("alice")
    throttle.failed("alice", None)
    assert throttle.wait_s("alice", None) == 0  # the name's count started again after the success
    now[0] += FORGET_S + 1
    assert throttle.wait_s("x", "10.0.0.1") == 0 and not throttle._records  # forgotten


def test_spraying_many_names_from_one_address_is_locked_out() -> None:
    throttle = SignInThrottle(clock=lambda: 0.0)
    for i in range(FREE_FAILURES_ADDRESS):
        assert throttle.wait_s(f"user{i}", "10.0.0.9") == 0
        throttle.failed(f"user{i}", "10.0.0.9")
    assert throttle.wait_s("anyone", "10.0.0.9") == FIRST_LOCK_S


# --- hosts -----------------------------------------------------------------------------------------
def test_host_names() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")
    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "::1"]
    assert "lens.example.com" in allowed_hosts("127.0.0.1", ["Lens.Example.com."])
    wide = allowed_hosts("0.0.0.0")
    assert "0.0.0.0" not in wide and len(wide) > 3  # the machine's own names and addresses
    ok = ["127.0.0.1", "localhost", "::1", "*.example.org"]
    for header in ("127.0.0.1:8501", "localhost", "LOCALHOST:1", "[::1]:8501", "a.example.org", "b.a.example.org."):
        assert host_allowed(header, ok), header
    for header in (None, "", "evil.example", "127.0.0.1.evil.example", "localhost.evil", "example.org",
                   "user@localhost", "localhost/x", "localhost:99999", "localhost:abc", "127.0.0.1 evil"):
        assert not host_allowed(header, ok), header
    assert host_allowed("anything.at.all", ["*"])
    assert host_name("[::1]:80") == "::1"


# --- corpora ---------------------------------------------------------------------------------------
@pytest.fixture()
def corpora(tmp_path: Path, tiny_corpus: Path) -> Path:
    root = tmp_path / "corpora"
    for name in ("alpha", "beta"):
        shutil.copytree(tiny_corpus, root / name)
    return root


def test_registry_names_corpora_by_folder_and_finds_new_ones(corpora: Path, tmp_path: Path, tiny_corpus: Path) -> None:
    other = shutil.copytree(tiny_corpus, tmp_path / "elsewhere" / "gamma")
    served, roots = server_config.served_corpora([str(other), str(corpora)])
    registry = CorpusRegistry(served, roots)
    assert registry.names() == ["gamma", "alpha", "beta"]  # given one by one first (the default), then by name
    assert registry.default.name == "gamma"
    assert registry.location("beta") == str((corpora / "beta").resolve())
    assert registry.location("../beta") is None and registry.location(str(corpora / "beta")) is None
    shutil.copytree(tiny_corpus, corpora / "delta")  # created while the server runs
    assert "delta" in registry.names()
    assert registry.name_of(str(corpora / "delta" / ".." / "delta")) == "delta"
    (corpora / "not-a-corpus").mkdir()
    assert "not-a-corpus" not in registry.names()


def test_two_corpora_of_one_name_are_refused(tmp_path: Path, tiny_corpus: Path) -> None:
    a = shutil.copytree(tiny_corpus, tmp_path / "a" / "runs")
    b = shutil.copytree(tiny_corpus, tmp_path / "b" / "runs")
    with pytest.raises(ServerConfigError, match="two corpora are named 'runs'"):
        server_config.served_corpora([str(a), str(b)])
    registry = CorpusRegistry([ServedCorpus("runs", str(a))])
    with pytest.raises(ServerConfigError, match="already served"):
        registry.add(str(b))
    assert registry.add(str(a)) == "runs"


def test_serving_a_folder_that_holds_no_corpus_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ServerConfigError, match="neither a corpus"):
        server_config.served_corpora([str(tmp_path / "empty")])
    with pytest.raises(CorpusError, match="not a directory"):
        server_config.served_corpora([str(tmp_path / "missing")])


def test_who_may_open_which_folder(corpora: Path, tmp_path: Path, tiny_corpus: Path) -> None:
    served = [ServedCorpus("alpha", str((corpora / "alpha").resolve()))]
    allowed = tmp_path / "allowed"
    registry = CorpusRegistry(served, allow_dirs=[str(allowed)])
    beside = corpora / "beta"
    deep = shutil.copytree(tiny_corpus, allowed / "team" / "runs")
    outside = shutil.copytree(tiny_corpus, tmp_path / "private" / "secret")
    # anyone may open what is served
    assert registry.check_open(VIEWER, str(corpora / "alpha")) == str((corpora / "alpha").resolve())
    # viewers nothing else
    for path in (beside, deep, outside):
        with pytest.raises(AccessDenied, match="viewers choose among"):
            registry.check_open(VIEWER, str(path))
    # editors: beside a served corpus, or inside an allowed folder; not elsewhere, not by .. or a link
    assert registry.check_open(EDITOR, str(beside)) == str(beside.resolve())
    assert registry.check_open(EDITOR, str(deep)) == str(deep.resolve())
    for path in (outside, corpora / "alpha" / ".." / ".." / "private" / "secret", "s3://bucket/corpus"):
        with pytest.raises(AccessDenied):
            registry.check_open(EDITOR, str(path))
    (allowed / "link").symlink_to(outside)
    with pytest.raises(AccessDenied, match="outside the folders"):
        registry.check_open(EDITOR, str(allowed / "link"))
    # the owner of a local server anywhere
    assert registry.check_open(OWNER, str(outside)) == str(outside.resolve())


# --- exposure and the CLI ------------------------------------------------------------------------------
def test_exposure_rules() -> None:
    server_config.check_exposure("127.0.0.1", None, False)
    server_config.check_exposure("0.0.0.0", "users.toml", False)
    server_config.check_exposure("0.0.0.0", None, True)
    with pytest.raises(ServerConfigError) as err:
        server_config.check_exposure("0.0.0.0", None, False)
    assert "--auth" in str(err.value) and "--insecure-no-auth" in str(err.value)
    with pytest.raises(ServerConfigError, match="contradict"):
        server_config.check_exposure("127.0.0.1", "users.toml", True)


def test_config_travels_to_the_app(corpora: Path, tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    add_user(users, "alice", "editor", "long enough")
    cfg = server_config.build([str(corpora)], "127.0.0.1", auth=users, extra_hosts=["lens.example.com"],
                              watch=[tmp_path], data_home=tmp_path / "home")
    again = server_config.ServerConfig.from_json(cfg.to_env())
    assert again == cfg and again.signs_in and again.registry().names() == ["alpha", "beta"]
    assert "lens.example.com" in again.hosts and str((tmp_path / "home" / "corpora").resolve()) in again.allow_dirs
    assert again.open_principal.name == "nobody"


@pytest.mark.parametrize("args, message", [
    (["--host", "0.0.0.0"], "--insecure-no-auth"),
    (["--host", "192.0.2.1"], "--auth USERS_FILE"),
    (["--auth", "{users}", "--insecure-no-auth"], "contradict"),
    (["--auth", "{missing}"], "does not exist"),
    (["--auth", "{open}"], "chmod 600"),
    (["--auth", "{broken}"], "not valid TOML"),
    (["--secrets", "{users}"], "needs --auth"),
])
def test_serve_refuses_before_starting(tiny_corpus: Path, tmp_path: Path, args: list[str], message: str) -> None:
    users = tmp_path / "users.toml"
    add_user(users, "alice", "editor", "long enough")
    (tmp_path / "open.toml").write_text(users.read_text())
    (tmp_path / "open.toml").chmod(0o644)
    (tmp_path / "broken.toml").write_text("[users\n")
    (tmp_path / "broken.toml").chmod(0o600)
    paths = {"users": users, "missing": tmp_path / "missing.toml", "open": tmp_path / "open.toml",
             "broken": tmp_path / "broken.toml"}
    result = runner.invoke(app, ["serve", "--corpus", str(tiny_corpus), *[a.format(**paths) for a in args]])
    assert result.exit_code == 1 and message in result.output, result.output


GOOD_SECRETS = """[auth]
redirect_uri = "https://lens.example.com/oauth2callback"
cookie_secret = "0123456789abcdef0123456789abcdef-long"

[auth.corp]
client_id = "id"
client_secret = "secret"
server_metadata_url = "https://idp.example.com/.well-known/openid-configuration"
"""


@pytest.mark.parametrize("change, message", [
    (("", ""), None),
    (('redirect_uri = "https://lens.example.com/oauth2callback"', 'redirect_uri = "https://lens.example.com/cb"'),
     "/oauth2callback"),
    (('redirect_uri = "https://lens.example.com/oauth2callback"', 'redirect_uri = "lens/oauth2callback"'),
     "http(s)://"),
    (('"0123456789abcdef0123456789abcdef-long"', '"short"'), "at least 32"),
    (("[auth.corp]", "[auth.other]"), "no [auth.corp] section"),
    (('client_secret = "secret"\n', ""), "lacks client_secret"),
    (('"https://idp.example.com', '"http://idp.example.com'), "https:// URL"),
    (("[auth]", "[auth"), "not valid TOML"),
])
def test_oidc_configuration_is_checked_at_start(tiny_corpus: Path, tmp_path: Path, change: tuple[str, str],
                                                message: str | None) -> None:
    pytest.importorskip("authlib")
    from horizonlens.server.oidc import check_oidc

    users = tmp_path / "users.toml"
    add_user(users, "alice", "editor", "long enough")
    with users.open("a") as fh:
        fh.write('\n[oidc]\nprovider = "corp"\neditors = ["alice@example.com"]\n')
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(GOOD_SECRETS.replace(*change))
    secrets.chmod(0o600)
    oidc = load_users(users).oidc
    if message is None:
        assert check_oidc(oidc, secrets) == secrets
        cfg = server_config.build([str(tiny_corpus)], "0.0.0.0", auth=users, secrets=secrets)
        assert cfg.secrets == str(secrets.resolve())
        return
    with pytest.raises(ServerConfigError, match=re.escape(message)):
        check_oidc(oidc, secrets)
    result = runner.invoke(app, ["serve", "--corpus", str(tiny_corpus), "--auth", str(users), "--secrets",
                                 str(secrets)])
    assert result.exit_code == 1 and message in result.output


def test_oidc_secrets_must_be_private(tmp_path: Path) -> None:
    pytest.importorskip("authlib")
    from horizonlens.server.oidc import check_oidc

    secrets = tmp_path / "secrets.toml"
    secrets.write_text(GOOD_SECRETS)
    secrets.chmod(0o644)
    with pytest.raises(ServerConfigError, match="chmod 600"):
        check_oidc(OidcRoles("corp", ("a@example.com",)), secrets)
    with pytest.raises(ServerConfigError, match="does not exist"):
        check_oidc(OidcRoles("corp", ("a@example.com",)), tmp_path / "nope.toml")


def test_users_commands(tmp_path: Path) -> None:
    path = tmp_path / "team" / "users.toml"
    result = runner.invoke(app, ["users", "add", str(path), "alice", "--role", "editor"], input="long enough\n")
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["users", "add", str(path), "bob"], input="also long enough\n")
    assert result.exit_code == 0 and "bob (viewer)" in result.output
    result = runner.invoke(app, ["users", "list", str(path), "--json"])
    assert result.output.splitlines() == ['{"name": "alice", "role": "editor"}', '{"name": "bob", "role": "viewer"}']
    assert check_credentials(load_users(path), "bob", "also long enough")
    result = runner.invoke(app, ["users", "add", str(path), "carl"], input="short\n")
    assert result.exit_code == 1 and "at least 8" in result.output
    result = runner.invoke(app, ["users", "remove", str(path), "alice"])
    assert result.exit_code == 0 and [u.name for u in list_users(path)] == ["bob"]
