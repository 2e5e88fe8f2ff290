"""Sign-in through an identity provider: Streamlit's `st.login` (OpenID Connect), checked before the server starts.

Teams with an identity provider (Google, Microsoft Entra, Okta, Auth0, Keycloak …) can let people sign
in there instead of with passwords. Streamlit's `st.login` does the OpenID Connect flow; it reads its
settings from the `[auth]` section of a secrets file:

    [auth]
    redirect_uri = "https://lens.example.com/oauth2callback"
    cookie_secret = "a long random string"
    client_id = "..."
    client_secret = "..."
    server_metadata_url = "https://accounts.google.com/.well-known/openid-configuration"

(or the last three in a named section `[auth.google]`, chosen with `provider = "google"` in the users
file's `[oidc]` section, which also says which addresses are editors and which viewers). Streamlit only
checks these settings when someone presses "Sign in"; `serve` checks them at start, so a typo stops the
server with a message instead of failing the first user.
"""

from __future__ import annotations

import importlib.util
import stat
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from horizonlens.errors import ServerConfigError
from horizonlens.server.users import OidcRoles

MIN_COOKIE_SECRET = 32  # characters: signs the session cookie


def default_secrets_files() -> list[Path]:
    """Where Streamlit looks for secrets by default: the working directory's, then the user's."""
    return [Path.cwd() / ".streamlit" / "secrets.toml", Path.home() / ".streamlit" / "secrets.toml"]


def find_secrets(given: Path | str | None) -> Path:
    """The secrets file to use: the one given, else the first of Streamlit's defaults that exists."""
    if given is not None:
        return Path(given)
    for candidate in default_secrets_files():
        if candidate.is_file():
            return candidate
    raise ServerConfigError("the users file has an [oidc] section, but no secrets file with an [auth] section was "
                            "found; give one with --secrets FILE (docs/security.md, 'Sign-in with an identity "
                            "provider')")


def read_secrets(path: Path | str) -> dict[str, Any]:
    """A secrets file (owner-only, valid TOML) as a dict; ServerConfigError otherwise."""
    path = Path(path)
    try:
        st = path.stat()
        if st.st_mode & 0o077:
            raise ServerConfigError(f"secrets file {path} can be read by other users (mode "
                                    f"{stat.S_IMODE(st.st_mode):04o}); it holds the client secret: run "
                                    f"`chmod 600 {path}`")
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ServerConfigError(f"secrets file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ServerConfigError(f"secrets file {path} cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ServerConfigError(f"secrets file {path} is not valid TOML: {exc}") from None


def _url(value: Any, key: str, where: str, https: bool) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in (("https",) if https else ("https", "http")) or not parts.netloc:
        need = "an https:// URL" if https else "an http(s):// URL"
        raise ServerConfigError(f"{where}: `{key}` must be {need}, not {value!r}")
    return str(value)


def check_oidc(roles: OidcRoles, secrets: Path | str | None) -> Path:
    """Check that st.login can run with these settings; the secrets file used (ServerConfigError otherwise)."""
    if importlib.util.find_spec("authlib") is None:
        raise ServerConfigError("sign-in with an identity provider uses Streamlit's st.login, which needs Authlib: "
                                "pip install 'horizonlens[oidc]'")
    path = find_secrets(secrets)
    data = read_secrets(path)
    auth = data.get("auth")
    where = f"secrets file {path}: [auth]"
    if not isinstance(auth, dict):
        raise ServerConfigError(f"secrets file {path} has no [auth] section")
    redirect = _url(auth.get("redirect_uri"), "redirect_uri", where, https=False)
    if not redirect.rstrip("/").endswith("/oauth2callback"):
        raise ServerConfigError(f"{where}: `redirect_uri` must end with /oauth2callback (Streamlit answers there)")
    secret = auth.get("cookie_secret")
    if not isinstance(secret, str) or len(secret) < MIN_COOKIE_SECRET:
        raise ServerConfigError(f"{where}: `cookie_secret` must be a random string of at least {MIN_COOKIE_SECRET} "
                                "characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)")
    section = auth if roles.provider is None else auth.get(roles.provider)
    where = where if roles.provider is None else f"secrets file {path}: [auth.{roles.provider}]"
    if not isinstance(section, dict):
        raise ServerConfigError(f"secrets file {path} has no [auth.{roles.provider}] section (the users file's "
                                "[oidc] provider)")
    if roles.provider is not None and "_" in roles.provider:
        raise ServerConfigError(f"{where}: Streamlit refuses provider names with '_'; rename the section")
    missing = [k for k in ("client_id", "client_secret", "server_metadata_url") if not section.get(k)]
    if missing:
        raise ServerConfigError(f"{where} lacks {', '.join(missing)}")
    _url(section["server_metadata_url"], "server_metadata_url", where, https=True)
    return path
