"""Naming a Ray cluster that does not answer fails fast, with the address and the probe's bound in the message.

Its own module: the cluster test_ray_replay starts for its module would be up here, and a process already in a
Ray session uses that one whenever the probe gets an answer (ray_engine._connect; this sandbox answers TCP on
any address), so this runs with no session open.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
ray = pytest.importorskip("ray")

from horizonlens.errors import ReplayError  # noqa: E402
from horizonlens.model.ray_engine import RayOptions, replay_on_ray  # noqa: E402
from horizonlens.model.replay import ReplayConfig  # noqa: E402
from horizonlens.query.store import open_store  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.slow]
CONFIG = ReplayConfig(chunk_size=128)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once it is closed


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}", "10.255.255.1:6379"])
def test_an_unreachable_address_fails_naming_it_and_its_bound(tiny_corpus: Path, tiny_checkpoint: Path,
                                                              address: str) -> None:
    """ray.init retries an unreachable address for minutes; the probe gives up after CONNECT_TIMEOUT_S.

    The bound is the probe's own (its message names it); the test waits for the answer without a clock of
    its own, so a loaded machine cannot fail it (the join's limit only keeps a hang from blocking the suite).
    """
    import threading

    from horizonlens.model.ray_engine import CONNECT_TIMEOUT_S

    address = address.format(port=_closed_port())
    box: dict = {}

    def run() -> None:
        try:
            replay_on_ray(open_store(tiny_corpus), tiny_checkpoint, [], CONFIG, RayOptions(address=address))
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(600)
    assert not thread.is_alive(), f"replay_on_ray({address!r}) still waiting"
    assert isinstance(box.get("error"), ReplayError), box
    message = str(box["error"])
    assert address in message and "cannot reach" in message
    if address.startswith(("127.", "ray://127.")):  # a closed local port: the probe itself answers, with its bound
        assert f"within {CONNECT_TIMEOUT_S:g} s" in message
    assert not ray.is_initialized()
