"""Launchers for the real servers Qala runs against: mosquitto, influxd (1.x) and victoria-metrics.

Owns finding each binary, writing its config into a work directory, starting it on a loopback port, waiting
until it answers, stopping it by pid (SIGTERM, then SIGKILL), restarting it on the same port and data, and a
few query helpers. Used by the tests (tests/_plugins/services.py), the demo and the benchmarks.

Standard library only (subprocess, socket, ssl, urllib). Imports nothing from hub/, protocols/ or firmware/.
Every server listens on 127.0.0.1 only; its output goes to `<workdir>/<name>.log`.

Facts about the Debian 12 packages, found on these machines:
- mosquitto 2.0.11 lives in /usr/sbin, often not on a non-root PATH. Started as root it switches to the user
  'mosquitto', which then cannot write a persistence file in a root-owned work directory: the generated
  config says `user root` when we run as root. It loads its persistence file before opening listeners.
- influxd 1.6.7 silently ignores unknown config keys. Debian renamed upstream's `reporting-disabled` to
  `reporting-enabled`, so the generated config sets both. Environment variables INFLUXDB_* override the
  config file, so they are removed from the server's environment.
- victoria-metrics 1.79 keeps freshly written rows in memory for about a second before they are
  searchable; `/internal/force_flush` makes them searchable at once (`VictoriaMetrics.flush()`). It rejects
  samples older than -retentionPeriod (default one month), so the launcher sets 100 years: tests write
  fixed timestamps. The v2 write API ignores the bucket: series are named `<measurement>_<field>`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from types import TracebackType

__all__ = [
    "SITE_MOSQUITTO_CONFIG",
    "STORE_BROKER_CONF",
    "Influxd",
    "Mosquitto",
    "Service",
    "ServiceError",
    "ServiceUnavailable",
    "VictoriaMetrics",
    "free_port",
]

HOST = "127.0.0.1"
SITE_MOSQUITTO_CONFIG = Path(__file__).with_name("mosquitto-qala.conf")
STORE_BROKER_CONF = "broker/qala-broker.conf"
"""The mosquitto snippet inside a provisioning store (hub.trust.store.BROKER_CONF; a test keeps them equal)."""

# Ports handed out by free_port() in this process, so that two launchers created before either server
# binds (influxd needs two ports) never receive the same one.
_handed_out: set[int] = set()

# urllib honours http_proxy; loopback servers must never be reached through a proxy.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceUnavailable(RuntimeError):  # noqa: N818 - the name says what the caller needs to know
    """The server's binary is not installed: the message names the Debian package to install."""


class ServiceError(RuntimeError):
    """A server did not start, died, or answered an HTTP request with an error."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick for port 0)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """Send one HTTP request without any proxy; raise ServiceError on a status >= 300 or no answer."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))  # noqa: S310
    try:
        with _opener.open(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace").strip()
        raise ServiceError(f"{method} {url} -> HTTP {exc.code}: {detail}") from exc
    except (OSError, HTTPException) as exc:
        raise ServiceError(f"{method} {url} failed: {exc}") from exc


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status of GET url, or None if nothing answers (readiness probes)."""
    try:
        with _opener.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, HTTPException):
        return None


class Service:
    """One server process bound to 127.0.0.1:port, with its config, data and log under workdir.

    start() may be called again after stop() or kill(): the port and the data directory stay the same,
    so whatever the server persisted survives the restart.
    """

    name: ClassVar[str]
    """Binary name, also used for the log file's name."""
    package: ClassVar[str]
    """The Debian package that installs the binary."""
    search_dirs: ClassVar[tuple[str, ...]] = ()
    """Directories tried after PATH."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        binary: str | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 30.0,
        new_session: bool = False,
    ) -> None:
        """Prepare a server in workdir (created if missing) on port (default: a free loopback port).

        binary overrides the executable's name or path; start_timeout bounds start(); stop_timeout is how
        long stop() waits after SIGTERM before it sends SIGKILL; new_session starts the server in a session
        of its own, so that a Ctrl-C in the terminal reaches only the caller, which stops it in order (demo).
        """
        self.workdir = Path(workdir).absolute()
        self._port = free_port() if port is None else port
        self.binary = binary or self.name
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.new_session = new_session
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} workdir={self.workdir}>"

    @property
    def host(self) -> str:
        """Always 127.0.0.1."""
        return HOST

    @property
    def port(self) -> int:
        """The port clients connect to; the same across restarts."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the server (http://127.0.0.1:port; mqtt://... for mosquitto)."""
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's stdout and stderr, appended across restarts."""
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        """The server's pid while a process has been started and not yet reaped."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """True while the process started by start() is alive."""
        return self._process is not None and self._process.poll() is None

    def executable(self) -> str:
        """The binary's full path; ServiceUnavailable naming the Debian package if it is not installed."""
        hint = f"install the Debian package '{self.package}' (scripts/setup does)"
        if os.sep in self.binary:
            if os.access(self.binary, os.X_OK):
                return self.binary
            raise ServiceUnavailable(f"{self.binary} is not an executable file: {hint}")
        found = shutil.which(self.binary) or next(
            (path for folder in self.search_dirs if (path := shutil.which(self.binary, path=folder))), None
        )
        if found is None:
            places = " or ".join(["PATH", *self.search_dirs])
            raise ServiceUnavailable(f"{self.binary} not found on {places}: {hint}")
        return found

    def start(self) -> Self:
        """Spawn the server and wait until it answers; ServiceError with the log's last lines otherwise."""
        if self.running:
            raise ServiceError(f"{self!r} is already running")
        executable = self.executable()
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = self._prepare(executable)
        with self.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            log.write(f"--- qala: starting {' '.join(argv)} at {stamp}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self._process = subprocess.Popen(  # noqa: S603 - argv is built here, never from user input
                argv,
                cwd=self.workdir,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.new_session,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM the server, wait (stop_timeout by default), then SIGKILL; return its exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def kill(self) -> int | None:
        """SIGKILL the server (a crash: nothing gets saved) and reap it; return its exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
            process.wait()
        return process.returncode

    def restart(self) -> Self:
        """stop(), then start() on the same port and data."""
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote since its latest start."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        """Start the server unless it is running."""
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # To implement in subclasses.

    def _prepare(self, executable: str) -> list[str]:
        """Write the config files; return the command line."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """One readiness probe; True when the server serves requests."""
        raise NotImplementedError

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _wait_ready(self) -> None:
        assert self._process is not None, "start() sets it"
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise ServiceError(self._failure(f"exited with code {code} while starting"))
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise ServiceError(self._failure(f"did not answer within {self.start_timeout:g} s"))
            time.sleep(0.02)

    def _failure(self, what: str) -> str:
        tail = self.log_tail() or "(empty)"
        return f"{self.name} on {self.host}:{self.port} {what}; last lines of {self.log_path}:\n{tail}"


class Mosquitto(Service):
    """An MQTT broker with Qala's site config (simulators/mosquitto-qala.conf) and a persistence file.

    Plain by default: one loopback listener, anonymous clients allowed (a lab bench). With `store=` it is
    the site's provisioned broker instead (`qala provision init`, issue 13): the store's own mosquitto snippet
    (STORE/broker/qala-broker.conf: TLS with the store's broker certificate, password_file, acl_file,
    allow_anonymous false, use_username_as_clientid true) with only its listener moved to 127.0.0.1:port.

    Readiness is an MQTT CONNECT answered by a CONNACK (over TLS, verified against the store's CA, with a
    store), so that another process holding the port is not mistaken for the broker. Any CONNACK counts, a
    refusal too: a broker that refuses anonymous clients is up.
    """

    name = "mosquitto"
    package = "mosquitto"
    search_dirs = ("/usr/sbin", "/usr/local/sbin")

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        extra_config: Iterable[str] = (),
        site_config: Path = SITE_MOSQUITTO_CONFIG,
        tls: tuple[Path, Path] | None = None,
        store: Path | None = None,
        **options: Any,
    ) -> None:
        """extra_config lines come after the site config: numbers and booleans there override it.

        tls=(certfile, keyfile) adds a TLS listener on `tls_port` (a second free loopback port) with that
        server certificate, after everything else; the plain listener on `port` stays (readiness probe).
        store=STORE makes it the store's provisioned broker on `port` (TLS only; no plain listener): the
        store's snippet is read again at every start, its passwd and acl again at every reload() (SIGHUP).
        options: binary, start_timeout, stop_timeout, new_session (see Service).
        """
        if tls is not None and store is not None:
            raise ValueError("Mosquitto: tls= and store= do not combine (a store's broker is TLS already)")
        super().__init__(workdir, port, **options)
        self.extra_config = list(extra_config)
        self.site_config = site_config
        self.tls = tls
        self.tls_port: int | None = free_port() if tls is not None else None
        self.store = None if store is None else Path(store).absolute()
        self.ca_file: Path | None = None
        """With a store: the CA its snippet names (cafile), what clients verify the broker with."""

    @property
    def url(self) -> str:
        """mqtt://127.0.0.1:port (mqtts:// with a store)."""
        return f"{'mqtts' if self.store is not None else 'mqtt'}://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        """The generated mosquitto.conf."""
        return self.workdir / "mosquitto.conf"

    @property
    def persistence_dir(self) -> Path:
        """Where mosquitto.db lives."""
        return self.workdir / "persistence"

    def _prepare(self, executable: str) -> list[str]:
        self.persistence_dir.mkdir(parents=True, exist_ok=True)
        lines = ["# Generated by simulators/services.py for a test or demo broker; rewritten on every start."]
        if self.store is None:
            lines += [f"listener {self.port} {self.host}", "allow_anonymous true"]
        lines += [f"persistence_location {self.persistence_dir}/", "log_dest stderr"]
        if os.geteuid() == 0:
            lines.append("# As root, mosquitto would switch to user 'mosquitto' and fail to save its database.")
            lines.append("user root")
        lines += [f"# --- {self.site_config} ---", self.site_config.read_text().rstrip()]
        if self.store is not None:
            lines += self._store_snippet()
        if self.extra_config:
            lines += ["# --- extra_config ---", *self.extra_config]
        if self.tls is not None:
            lines += ["# --- tls= ---", f"listener {self.tls_port} {self.host}", f"certfile {self.tls[0]}",
                      f"keyfile {self.tls[1]}"]
        self.config_path.write_text("\n".join(lines) + "\n")
        return [executable, "-c", str(self.config_path)]

    def _store_snippet(self) -> list[str]:
        """The store's mosquitto snippet with its one listener moved to 127.0.0.1:port; sets ca_file."""
        assert self.store is not None, "only with a store"
        path = self.store / STORE_BROKER_CONF
        try:
            snippet = path.read_text().splitlines()
        except OSError as exc:
            raise ServiceError(f"store {self.store}: cannot read {path}: {exc.strerror or exc}") from None
        listeners = [i for i, line in enumerate(snippet) if line.split()[:1] == ["listener"]]
        cafiles = [line.split(None, 1)[1] for line in snippet if line.split()[:1] == ["cafile"]]
        if len(listeners) != 1 or len(cafiles) != 1:
            raise ServiceError(f"{path}: expected one listener and one cafile line (`qala provision init` writes it)")
        snippet[listeners[0]] = f"listener {self.port} {self.host}"
        self.ca_file = Path(cafiles[0])
        return [f"# --- {path}, its listener moved to {self.host}:{self.port} ---", *snippet]

    def reload(self) -> None:
        """SIGHUP: mosquitto reads its password_file and acl_file again (after a provisioning change)."""
        if not self.running:
            raise ServiceError(f"{self!r} is not running")
        assert self._process is not None, "running"
        self._process.send_signal(signal.SIGHUP)

    def _probe_socket(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=1.0)
        if self.store is None:
            return sock
        # Verify the chain (the store's CA), not the name: this only asks whether the broker is up.
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.check_hostname = False
        try:
            return context.wrap_socket(sock)
        except BaseException:
            sock.close()
            raise

    def _ready(self) -> bool:
        # MQTT 3.1.1 CONNECT, clean session, keepalive 60 s, client id "qala-ready-probe"; then DISCONNECT.
        client_id = b"qala-ready-probe"
        variable = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
        connect = bytes([0x10, len(variable)]) + variable
        try:
            with self._probe_socket() as sock:
                sock.sendall(connect)
                connack = sock.recv(4)
                with contextlib.suppress(OSError):
                    sock.sendall(b"\xe0\x00")
        except OSError:  # ssl.SSLError is one
            return False
        return connack[:2] == b"\x20\x02"  # accepted or refused (no anonymous): either way a broker answered


class Influxd(Service):
    """InfluxDB 1.x (Debian ships 1.6.7: v1 HTTP API only) with its meta, data and wal under workdir.

    Its RPC service (backup/restore) gets a second free loopback port. Monitoring into `_internal`,
    continuous queries, usage reporting and pprof are off; the graphite, collectd, opentsdb and udp inputs
    are off by default.
    """

    name = "influxd"
    package = "influxdb"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        rpc_port: int | None = None,
        settings: Mapping[str, Mapping[str, str | int | bool]] | None = None,
        **options: Any,
    ) -> None:
        """settings override or add config keys per section, e.g. {"data": {"wal-fsync-delay": "100ms"}}.

        options: binary, start_timeout, stop_timeout, new_session (see Service).
        """
        super().__init__(workdir, port, **options)
        self.rpc_port = free_port() if rpc_port is None else rpc_port
        self.settings = {section: dict(values) for section, values in (settings or {}).items()}

    @property
    def config_path(self) -> Path:
        """The generated influxd.conf."""
        return self.workdir / "influxd.conf"

    def _prepare(self, executable: str) -> list[str]:
        config: dict[str, dict[str, str | int | bool]] = {
            "": {
                "reporting-enabled": False,  # Debian's name for the key
                "reporting-disabled": True,  # upstream's name; influxd ignores keys it does not know
                "bind-address": f"{self.host}:{self.rpc_port}",
            },
            "meta": {"dir": str(self.workdir / "meta")},
            "data": {
                "dir": str(self.workdir / "data"),
                "wal-dir": str(self.workdir / "wal"),
                "query-log-enabled": False,
            },
            "monitor": {"store-enabled": False},
            "continuous_queries": {"enabled": False},
            "http": {
                "bind-address": f"{self.host}:{self.port}",
                "pprof-enabled": False,
                "suppress-write-log": True,
            },
            "logging": {"suppress-logo": True},
        }
        for section, values in self.settings.items():
            config.setdefault(section, {}).update(values)
        text = ["# Generated by simulators/services.py; rewritten on every start."]
        for section, values in config.items():
            if section:
                text.append(f"\n[{section}]")
            text += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        self.config_path.write_text("\n".join(text) + "\n")
        return [executable, "run", "-config", str(self.config_path)]

    def _environment(self) -> dict[str, str]:
        return {key: value for key, value in os.environ.items() if not key.startswith("INFLUXDB_")}

    def _ready(self) -> bool:
        return _http_status(f"{self.url}/ping") == 204

    def query(self, db: str | None, q: str) -> dict[str, Any]:
        """Run InfluxQL q through GET /query (epoch=ns) and return the decoded JSON answer."""
        params = {"q": q, "epoch": "ns"} | ({"db": db} if db else {})
        _, body = _http("GET", f"{self.url}/query?{urllib.parse.urlencode(params)}")
        result: dict[str, Any] = json.loads(body)
        return result

    def execute(self, q: str, db: str | None = None) -> dict[str, Any]:
        """Run a statement that changes something (CREATE, DROP, ...) through POST /query."""
        params = {"q": q} | ({"db": db} if db else {})
        body = urllib.parse.urlencode(params).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        _, answer = _http("POST", f"{self.url}/query", body, headers)
        result: dict[str, Any] = json.loads(answer)
        errors = [r["error"] for r in result.get("results", []) if "error" in r]
        if errors:
            raise ServiceError(f"{q!r} failed: {'; '.join(errors)}")
        return result

    def create_database(self, name: str) -> None:
        """CREATE DATABASE name (a no-op if it exists)."""
        self.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        """DROP DATABASE name (a no-op if it does not exist)."""
        self.execute(f'DROP DATABASE "{name}"')

    def write(self, db: str, lines: str | Iterable[str], precision: str = "ns") -> None:
        """POST line protocol to /write?db=...; ServiceError unless influxd answers 204."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        params = urllib.parse.urlencode({"db": db, "precision": precision})
        _http("POST", f"{self.url}/write?{params}", body.encode())

    def points(self, db: str, q: str) -> list[dict[str, Any]]:
        """The rows of a SELECT as dicts (column -> value; time in ns), over all series, tags included."""
        rows: list[dict[str, Any]] = []
        for result in self.query(db, q).get("results", []):
            if "error" in result:
                raise ServiceError(f"{q!r} failed: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags", {})
                rows += [tags | dict(zip(series["columns"], values, strict=True)) for values in series["values"]]
        return rows


class VictoriaMetrics(Service):
    """VictoriaMetrics single-node, accepting InfluxDB line protocol (/write, /api/v2/write).

    Flags: -search.latencyOffset=0s makes points visible to queries as soon as they are flushed (default
    30 s), -search.disableCache stops query results being cached between tests, -retentionPeriod=100y
    accepts old fixed timestamps. Call flush() (or export(), which does) before reading what was written.
    """

    name = "victoria-metrics"
    package = "victoria-metrics"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        extra_flags: Sequence[str] = (),
        **options: Any,
    ) -> None:
        """extra_flags are appended to the command line (a later flag wins).

        options: binary, start_timeout, stop_timeout, new_session (see Service).
        """
        super().__init__(workdir, port, **options)
        self.extra_flags = list(extra_flags)

    @property
    def data_dir(self) -> Path:
        """-storageDataPath."""
        return self.workdir / "data"

    def _prepare(self, executable: str) -> list[str]:
        return [
            executable,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_dir}",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-retentionPeriod=100y",
            *self.extra_flags,
        ]

    def _ready(self) -> bool:
        return _http_status(f"{self.url}/health") == 200

    def flush(self) -> None:
        """Make every row received so far searchable (/internal/force_flush)."""
        _http("GET", f"{self.url}/internal/force_flush")

    def export(self, match: str = '{__name__=~".+"}', *, flush: bool = True) -> list[dict[str, Any]]:
        """Stored series matching a series selector, from /api/v1/export.

        Each is {"metric": {"__name__": ..., label: value}, "values": [...], "timestamps": [ms, ...]}.
        """
        if flush:
            self.flush()
        query = urllib.parse.urlencode({"match[]": match})
        _, body = _http("GET", f"{self.url}/api/v1/export?{query}")
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    def write(self, lines: str | Iterable[str], db: str | None = None) -> None:
        """POST line protocol to /write (the InfluxDB v1 endpoint); db becomes a `db` label."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        query = f"?{urllib.parse.urlencode({'db': db})}" if db else ""
        _http("POST", f"{self.url}/write{query}", body.encode())

    def delete_series(self, match: str) -> None:
        """Delete the series matching a selector (/api/v1/admin/tsdb/delete_series)."""
        query = urllib.parse.urlencode({"match[]": match})
        _http("POST", f"{self.url}/api/v1/admin/tsdb/delete_series?{query}")


def _toml_value(value: str | float | bool | list[str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)  # a JSON string (or array of strings) is a valid TOML one


def toml_text(tables: dict[str, dict[str, Any]], header: str = "") -> str:
    """A TOML document of tables of scalars (and arrays of strings), e.g. a generated hub.toml."""
    lines = [header] if header else []
    for name, values in tables.items():
        lines.append(f"\n[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"
