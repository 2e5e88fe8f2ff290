"""`horizonlens serve`: the Streamlit app, this process becoming the server."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from horizonlens.cli.base import app, sample_checkpoint_path, sample_corpus_path


@app.command()
def serve(corpus: Annotated[Optional[list[str]], typer.Option(
              help="Corpus directory, s3://bucket/prefix, or a folder of corpora; repeatable. URLs name a corpus by "
                   "its folder's name (?corpus=NAME); the first is the default (default: a copy of the bundled "
                   "sample corpus, made on first use).")] = None,
          checkpoint: Annotated[Optional[Path], typer.Option(help="MoE checkpoint directory (optional; default with "
                                                                  "the sample corpus: the bundled sample "
                                                                  "checkpoint).")] = None,
          host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local. Any other address "
                                                 "needs --auth (or --insecure-no-auth).")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port.")] = 8501,
          headless: Annotated[bool, typer.Option(help="Do not open a browser window.")] = True,
          auth: Annotated[Optional[Path], typer.Option(help="Users file (horizonlens users add): every session "
                                                            "signs in; viewers read, editors also write.")] = None,
          insecure_no_auth: Annotated[bool, typer.Option(
              "--insecure-no-auth", help="Serve a non-loopback address without sign-in (everyone is an editor): "
                                         "only behind a proxy that authenticates users itself.")] = False,
          allowed_host: Annotated[Optional[list[str]], typer.Option(
              help="Another Host name the server answers (a proxy's public name; *.domain for a domain); "
                   "repeatable. Requests for any other name are refused.")] = None,
          allow_dir: Annotated[Optional[list[Path]], typer.Option(
              help="A folder inside which editors may open corpora by path; repeatable.")] = None,
          watch: Annotated[Optional[list[Path]], typer.Option(
              help="Follow a folder of logs: new files and lines appended to .jsonl files are imported into the "
                   "first corpus while the server runs; repeatable.")] = None,
          secrets: Annotated[Optional[Path], typer.Option(
              help="Secrets file with Streamlit's [auth] section, for sign-in with an identity provider (the users "
                   "file's [oidc] section); default: .streamlit/secrets.toml here or in your home.")] = None,
          floor: Annotated[bool, typer.Option(
              "--floor", help="Serve a hello-world page instead of the app, with the same server and flags: what "
                              "any page costs on this machine (the benchmark's baseline).")] = False,
          ) -> None:
    """Start the Streamlit app (this process becomes the server: stopping it stops the app)."""
    from importlib.resources import files

    from horizonlens.ingest.targets import MAX_UPLOAD_MB
    from horizonlens.sample.bundled import data_home
    from horizonlens.server.config import ENV, FLOOR_ENV, build

    given = list(corpus or [])
    if not given:
        given = [str(sample_corpus_path())]
        checkpoint = checkpoint or sample_checkpoint_path()
    ckpt = ""
    if checkpoint is not None and checkpoint.exists():
        ckpt = str(checkpoint.resolve())
    elif checkpoint is not None:
        typer.secho(f"note: checkpoint {checkpoint} not found; starting without one", err=True)
    config = build(given, host, auth=auth, insecure_no_auth=insecure_no_auth, extra_hosts=allowed_host or [],
                   allow_dirs=allow_dir or [], watch=watch or [], checkpoint=ckpt, secrets=secrets,
                   data_home=data_home())
    # the locations only: credentials reach the app through the AWS_* variables this process passes on
    default = config.registry().default
    env = dict(os.environ, **{ENV: config.to_env()}, HORIZONLENS_CHECKPOINT=ckpt,
               HORIZONLENS_CORPUS=default.location if default else "")
    if floor:
        env[FLOOR_ENV] = "1"
    else:
        env.pop(FLOOR_ENV, None)
    served = Path(str(files("horizonlens.app") / "served.py"))
    cmd = [sys.executable, "-m", "streamlit", "run", str(served), "--server.address", host,
           "--server.port", str(port), "--server.headless", str(headless).lower(),
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
           # an unexpected error shows its type in the page; its message and traceback (server paths) stay in the log
           "--client.showErrorDetails", "type",
           # A served app does not reload its code, and a full garbage collection after every run (every step
           # change) costs about as much as the step itself.
           "--server.fileWatcherType", "none", "--runner.postScriptGC", "false",
           # one upload limit: the Import page's per-import limit (also in app/.streamlit/config.toml)
           "--server.maxUploadSize", str(MAX_UPLOAD_MB)]
    for name in config.hosts:  # Streamlit's own websocket check, beside the app's check of every request
        cmd += ["--server.allowedHosts", name]
    names = ", ".join(config.registry().names()) or "none yet"
    rules = ("sign-in required" if config.signs_in else
             "NO sign-in (--insecure-no-auth)" if config.insecure_no_auth else "local, no sign-in")
    typer.echo(f"Horizon Lens on http://{host}:{port}  (corpora: {names}; {rules})", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child process: a supervisor's SIGTERM reaches the server itself, so nothing is left running
    os.execve(sys.executable, cmd, env)
