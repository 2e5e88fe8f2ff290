"""`horizonlens users`: the accounts of a team server's users file (docs/security.md, "The team server")."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from horizonlens.cli.base import app, fail

users_app = typer.Typer(no_args_is_help=True, help="Accounts of a team server (serve --auth FILE): add, list, "
                                                   "remove. Passwords are stored as salted scrypt hashes.")
app.add_typer(users_app, name="users")

FileArg = Annotated[Path, typer.Argument(help="The users file (TOML, created owner-only if missing).")]


def _read_password() -> str:
    """The password from standard input: asked twice on a terminal, else the first line of the input."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            fail("the two passwords differ; nothing changed")
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


@users_app.command("add")
def add(file: FileArg,
        name: Annotated[str, typer.Argument(help="The user name typed at sign-in.")],
        role: Annotated[str, typer.Option(help="viewer (every page, SQL) or editor (also import, label, replay, "
                                                "export).")] = "viewer",
        replace: Annotated[bool, typer.Option(help="Change the role and password of an existing user.")] = False,
        ) -> None:
    """Add a user; the password is read from standard input (asked twice on a terminal)."""
    from horizonlens.server.users import add_user

    user = add_user(file, name, role, _read_password(), replace=replace)
    typer.echo(f"{'updated' if replace else 'added'} {user.name} ({user.role}) in {file}")


@users_app.command("list")
def list_cmd(file: FileArg,
             as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per user.")] = False,
             ) -> None:
    """List the users and their roles (never the hashes)."""
    from horizonlens.server.users import list_users

    for user in list_users(file):
        typer.echo(json.dumps({"name": user.name, "role": user.role}) if as_json else f"{user.name}\t{user.role}")


@users_app.command("remove")
def remove(file: FileArg, name: Annotated[str, typer.Argument(help="The user to remove.")]) -> None:
    """Remove a user (a running server signs them out at their next action)."""
    from horizonlens.server.users import remove_user

    remove_user(file, name)
    typer.echo(f"removed {name} from {file}")
