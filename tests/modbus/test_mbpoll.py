"""libmodbus's `mbpoll` (Debian package `mbpoll`; scripts/setup installs it), a third-party master, against the
real firmware's Modbus server (micropython, "uplink": "modbus"), over TCP and over RTU on a socat pty pair:
it reads input and holding registers, writes a setpoint where the board allows it, and gets the board's
refusals as libmodbus names them (exception 01 "Illegal function", 02 "Illegal data address", 03 "Illegal
data value"), never a timeout.

Report server id (FC 0x11, what `mbpoll -u` and bus scanners send) must answer exception 01. mbpoll takes
`-u` in RTU mode only ("-u is available only in RTU mode"), so over TCP the same request goes through
libmodbus's own modbus_report_slave_id, called with ctypes from libmodbus5, which mbpoll depends on.

mbpoll prints its errors on stderr; its exit code is 0 after a failed `-u`, so the tests read the text.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from protocols import boardmap
from tests.hub.conftest import wait_until
from tests.modbus.test_board_integration import board, free_port, pty_pair

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.micropython]

UNIT = 3
NOT_FOUND = "mbpoll not found on PATH: install the Debian package 'mbpoll' (scripts/setup does)"
QUIET_NAN = ["32704", "0"]  # 0x7FC0 0x0000: the slot of a quantity the board does not measure
_VALUE = re.compile(r"^\[(\d+)\]:\s+(\S+)", re.MULTILINE)


def mbpoll(*args: str) -> tuple[list[str], str]:
    """One poll (`-1`, PDU addresses `-0`, a 2 s timeout): the values mbpoll printed, in order, and its stderr."""
    exe = shutil.which("mbpoll")
    if exe is None:
        pytest.fail(NOT_FOUND)
    done = subprocess.run([exe, "-1", "-0", "-o", "2", "-a", str(UNIT), *args], capture_output=True, text=True,
                          timeout=10, check=False)
    return [value for _, value in _VALUE.findall(done.stdout)], done.stderr.strip()


def libmodbus_report_server_id(port: int) -> str:
    """modbus_report_slave_id over TCP through libmodbus itself: libmodbus's text for the error, or "answered"."""
    name = ctypes.util.find_library("modbus")
    if name is None:
        pytest.fail("libmodbus not found: install the Debian package 'mbpoll', which brings it (scripts/setup does)")
    lib = ctypes.CDLL(name, use_errno=True)
    lib.modbus_new_tcp.restype = ctypes.c_void_p
    lib.modbus_new_tcp.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.modbus_set_slave.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.modbus_set_response_timeout.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32]
    lib.modbus_connect.argtypes = [ctypes.c_void_p]
    lib.modbus_report_slave_id.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_uint8)]
    lib.modbus_strerror.restype = ctypes.c_char_p
    lib.modbus_strerror.argtypes = [ctypes.c_int]
    lib.modbus_close.argtypes = lib.modbus_free.argtypes = [ctypes.c_void_p]
    lib.modbus_close.restype = lib.modbus_free.restype = None
    ctx = lib.modbus_new_tcp(b"127.0.0.1", port)
    assert ctx, "modbus_new_tcp failed"
    try:
        lib.modbus_set_slave(ctx, UNIT)
        lib.modbus_set_response_timeout(ctx, 2, 0)
        assert lib.modbus_connect(ctx) == 0, lib.modbus_strerror(ctypes.get_errno())
        answer = (ctypes.c_uint8 * 256)()
        if lib.modbus_report_slave_id(ctx, len(answer), answer) >= 0:
            return "answered"
        return str(lib.modbus_strerror(ctypes.get_errno()).decode())
    finally:
        lib.modbus_close(ctx)
        lib.modbus_free(ctx)


def reads_the_map(*where: str) -> None:
    """Every input register in one FC 04, and two float32 slots decoded by mbpoll itself (ABCD: `-B`)."""
    values, err = mbpoll(*where, "-t", "3", "-r", "0", "-c", str(boardmap.INPUT_REGISTERS))
    assert len(values) == boardmap.INPUT_REGISTERS, err
    pm1 = boardmap.input_address("pm1")
    assert values[pm1 : pm1 + 2] == QUIET_NAN  # air1 measures pm25 and co2 only
    uptime = boardmap.input_address("uptime")
    values, err = mbpoll(*where, "-t", "3:float", "-B", "-r", str(uptime), "-c", "1")
    assert len(values) == 1, err
    assert float(values[0]) >= 0


def fan1(*where: str) -> float:
    values, err = mbpoll(*where, "-t", "4:float", "-B", "-r", "0", "-c", "1")
    assert len(values) == 1, err
    return float(values[0])


def write_fan1(value: str, *where: str) -> str:
    """mbpoll writes `value` to fan1's setpoint (FC 16, two registers); its stderr ("" when it worked)."""
    return mbpoll(*where, "-t", "4:float", "-B", "-r", "0", value)[1]


def test_mbpoll_over_tcp(tmp_path: Path) -> None:
    port = free_port()
    fw = board(tmp_path, {"transport": "tcp", "port": port, "unit": UNIT, "writers": ["127.0.0.1"]})
    try:
        wait_until(lambda: "TCP server" in fw.output(), 20, 0.1, what="the board's server")
        tcp = ("-p", str(port), "127.0.0.1")
        reads_the_map(*tcp)
        assert fan1(*tcp) == 20  # its fail-safe value until a master writes
        assert write_fan1("55.5", *tcp) == ""
        assert fan1(*tcp) == 55.5
        assert write_fan1("150", *tcp).endswith("failed: Illegal data value")  # over max 100: exception 03
        assert fan1(*tcp) == 55.5
        _, err = mbpoll(*tcp, "-t", "3", "-r", str(boardmap.INPUT_REGISTERS), "-c", "2")
        assert err.endswith("failed: Illegal data address")  # past the map: exception 02
        _, err = mbpoll("-u", *tcp)
        assert "only in RTU mode" in err  # mbpoll's own rule, hence libmodbus directly:
        assert libmodbus_report_server_id(port) == "Illegal function"
        assert fw.alive, fw.output()[-2000:]
    finally:
        fw.stop()


def test_mbpoll_write_from_an_address_not_in_writers_is_illegal_function(tmp_path: Path) -> None:
    port = free_port()
    fw = board(tmp_path, {"transport": "tcp", "port": port, "unit": UNIT})  # writers [] by default
    try:
        wait_until(lambda: "TCP server" in fw.output(), 20, 0.1, what="the board's server")
        tcp = ("-p", str(port), "127.0.0.1")
        assert write_fan1("55.5", *tcp).endswith("failed: Illegal function")
        assert fan1(*tcp) == 20  # reads are open; nothing changed
    finally:
        fw.stop()


def test_mbpoll_over_rtu(tmp_path: Path) -> None:
    with pty_pair(tmp_path) as (board_tty, master_tty):
        fw = board(tmp_path, {"transport": "rtu", "device": board_tty, "unit": UNIT, "baudrate": 9600,
                              "parity": "N"})
        try:
            wait_until(lambda: f"RTU unit {UNIT}" in fw.output(), 20, 0.1, what="the board's RTU server")
            rtu = ("-m", "rtu", "-b", "9600", "-P", "none", master_tty)  # mbpoll's default parity is even
            reads_the_map(*rtu)
            assert write_fan1("42", *rtu) == ""
            assert fan1(*rtu) == 42
            _, err = mbpoll("-u", *rtu)
            assert err.endswith("Report slave ID failed(-1): Illegal function")  # not "Connection timed out"
            assert fan1(*rtu) == 42  # the line is still in step after the exception
            assert fw.alive, fw.output()[-2000:]
        finally:
            fw.stop()
