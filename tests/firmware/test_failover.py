"""A board that lists several brokers (`mqtt.host` as a list: the nodes of a cluster, docs/firmware.md) moves
to the next one when its connection is lost, and its offline buffer and sequence numbers carry on: every
reading of the run arrives, once the first broker's queue is read again, through one broker or the other.

Two provisioned mosquittos of the same site (the same CA, logins and ACL) stand in for two nodes of a clustered
broker; the real firmware, precompiled, under `micropython`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.firmware.boards import Board, Watcher, board_config

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.micropython]


def test_a_board_fails_over_to_the_next_broker_and_loses_nothing(mosquitto_factory: Any, tmp_path: Path) -> None:
    first: Mosquitto = mosquitto_factory()
    second: Mosquitto = mosquitto_factory()
    config = board_config(first)
    config["mqtt"]["host"] = [f"{first.host}:{first.port}", f"{second.host}:{second.port}"]
    one, two = Watcher(first, "w-first"), Watcher(second, "w-second")
    board = Board(tmp_path / "board", config).start()
    try:
        one.wait_for(lambda: len(one.telemetry()) >= 10, 30, "telemetry through the first broker", board)
        first.stop()
        two.wait_for(lambda: len(two.telemetry()) >= 10, 60, "telemetry through the second broker", board)
        first.start()  # what the first broker had acknowledged and not yet delivered: its watcher's session
        time.sleep(3)
        both = one.telemetry() + two.telemetry()
        assert {m.boot for m in both} == {0}  # the same boot: nothing restarted
        seqs = {m.seq for m in both}
        assert seqs == set(range(max(seqs) + 1)), sorted(set(range(max(seqs) + 1)) - seqs)
        out = board.output()
        assert f"mqtt: connected to {second.host}:{second.port}" in out, out[-2000:]
        assert "Traceback" not in out
        assert board.alive
    finally:
        board.stop()
        one.close()
        two.close()
