"""`qala modbus probe` with bad arguments: exit 2 and one line naming the option, never a traceback.

The landed command raised OverflowError from the socket layer for `--tcp 127.0.0.1:99999`, tried to connect
to unit 300, and blamed nothing for `--register zz:voltage` (Python's int() message alone).
"""

from __future__ import annotations

import pytest

from hub import cli


@pytest.mark.parametrize(("args", "says"), [
    (["--tcp", "127.0.0.1:99999"], "argument --tcp: '127.0.0.1:99999': the port must be 1..65535"),
    (["--tcp", "127.0.0.1:x"], "argument --tcp: '127.0.0.1:x': the port must be a number"),
    (["--tcp", ":502"], "argument --tcp: ':502': give HOST or HOST:PORT"),
    (["--tcp", "127.0.0.1", "--unit", "300"], "argument --unit: 300: a unit id is 1..247 on RTU, 0..255 over TCP"),
    (["--tcp", "127.0.0.1", "--unit", "one"], "argument --unit: 'one': a unit id is a number"),
    (["--rtu", "/dev/null", "--unit", "0"], "--unit 0: an RTU device answers only as 1..247"),
    (["--tcp", "127.0.0.1", "--timeout", "0"], "argument --timeout: must be a positive number, got 0"),
])
def test_bad_arguments_name_the_option(args: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["modbus", "probe", *args, "--profile", "sdm120"]
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own error exit
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2, err
    assert says in err
    assert "Traceback" not in err


def test_a_register_address_that_is_not_a_number_names_register(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["modbus", "probe", "--tcp", "127.0.0.1:1", "--register", "zz:voltage"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--register 'zz:voltage': the address 'zz' is not a number" in err
