"""The hub service: MQTT in, spool, InfluxDB out, with self-metrics and a graceful shutdown.

Tasks (one asyncio loop; the MQTT connection, hub.ingest.mqtt, feeds it as it reads):
- ingest: drains received messages in batches, turns them into Readings (hub.ingest.process), appends
  their line protocol to the spool with one write+fsync per batch, and only then acknowledges the batch's
  MQTT messages (those of device ids the provisioning store does not know are only counted and acknowledged).
  Seals the open segment when it holds `batch.size` lines or is `batch.flush_interval` old,
  and hands it to the writer. While the spool is full it takes nothing: the broker keeps the messages.
- writer (hub.sinks.writer): sends sealed segments, the backlog of a previous run first.
- control (hub.control.service): commands' resends and time-outs, schedules, the command journal
  (`<state>/commands.jsonl`: commands survive a restart); acks arrive through the ingest
  (they are acknowledged with their batch but not spooled), readings feed its rules; audit Readings come back
  through `emit` into the spool. With an [api] section, the HTTP API (hub.control.api) too.
- modbus (hub.modbus.poller, when [modbus] configures devices): polls devices; their Readings take the same
  path as MQTT readings (`ingest`: the control service's rules and the detectors see them, then the spool).
  Writes go through `Hub.modbus_write` (the control service uses the same ModbusService). With [cluster], only
  the buses whose lease this hub holds (hub.modbus.lease: one hub of the site per bus).
- north (hub.north, unless [north] turns both MQTT and webhooks off): the northbound feed for a situation
  centre: alerts and district summaries on `qala/{site}/_north/...` and to webhooks; closed last at a stop,
  so what it holds is handed over.
- alerting (hub.alerting): every `detect.interval` seconds the detectors' events (hub.detect) into the alert
  book (hub.alerts, `<state>/alerts.json`): each transition a `qala_alert` point, a northbound document
  (hub.north) and, if [[alerts.actions]] say so, a setpoint through the control service; every
  `alerts.summary_interval` seconds the district coverage (hub.coverage) as `qala_coverage` points and
  northbound summaries. The ingest keeps each device's last values for it (hub.coverage.LastValues). At
  start, in the background, the detectors' consumption baselines are loaded from InfluxDB
  (hub.detect.baseline).
- ota (hub.ota.service): releases (`[ota] releases`, default `<state>/releases`) and roll-outs
  (`<state>/rollouts/<id>.json`, carried on after a restart): every `ota.tick` seconds time-outs and next
  waves; offers and cancels signed with each board's command key on `qala/{site}/{device}/ota`; boards'
  `otaack` messages arrive through the ingest (acknowledged with their batch, not spooled): chunk requests
  answered at once, signed state reports to the roll-outs (`qala_ota`, `qala_rollout`, audit rows through
  the control service). With an [api] section, its /v1/rollouts endpoints (hub.ota.api).
- housekeeping: every `metrics.interval` seconds, a `qala_hub` snapshot into the spool and a registry save.
- confirm: once a second, the boards' confirmations (hub.ingest.confirm, protocols/confirm.py): for each
  board whose spooled messages advanced without a hole, the (boot, seq) up to which all are spooled, saved to
  `<state>/confirmed.json` (fsynced) first and then published, retained, on `qala/{site}/{device}/conf`. A
  board keeps each record until a confirmation covers it (`hub.confirm = false` turns this off).
- heartbeat: the hub's liveness for boards (protocols/liveness.py), retained on `qala/{site}/_hub/{hub}`:
  `online` at each connect and every `hub.heartbeat` seconds, `offline` at a clean stop and as the will the
  broker publishes when the hub dies; boards fail safe when no hub is alive.

Trust ([trust], docs/security.md): the provisioning store (hub.trust.store) is loaded before anything starts.
It gives the hub's MQTT login (TLS verified against the site CA by hub.ingest.mqtt), the provisioned device
ids (MQTT messages of any other id are counted and dropped by the ingest) and each board's command key (the
control service signs commands and checks acks with hub.control.signing). SIGHUP loads it again: boards
provisioned, rotated or revoked since take effect without a restart. In plain mode (a lab bench) every id is
stored and no MQTT board can be commanded.

A spool disk that refuses writes (full, read-only, failing) stops the intake, not the hub: the batch taken
stays in memory unacknowledged (the broker keeps its messages), the writer goes on sending what is spooled
(which may free the space), one ERROR names the path and the cause, `qala_hub.spool_write_failing` and
`spool_write_errors` say so, and the same batch is written again every few seconds until the disk takes it;
then the intake resumes by itself. Registry saves and dead letters that fail are logged and retried later.

Shutdown (SIGTERM/SIGINT, `request_stop`): stop taking messages, spool and acknowledge what was taken,
disconnect, seal, keep sending for up to `shutdown_timeout` seconds, save the registry. Whatever was not
sent stays in the spool for the next start; nothing acknowledged is ever only in memory.

Imports every hub module; the only module that wires them together.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from typing import TYPE_CHECKING

from hub.alerting import Alerting, site_places
from hub.backoff import Backoff
from hub.broker import Broker, make_broker
from hub.config import ConfigError
from hub.control.journal import Journal
from hub.control.service import ControlService
from hub.control.signing import Counter, Signer
from hub.detect.baseline import load_baseline
from hub.detect.engine import Detectors
from hub.ingest.confirm import Confirmations
from hub.ingest.process import Processor
from hub.ingest.sequence import SequenceTracker
from hub.metrics import Metrics
from hub.north import Northbound, NorthError, make_northbound
from hub.ota.selector import Facts
from hub.ota.server import OtaServer
from hub.ota.service import OtaService
from hub.registry import Registry
from hub.sinks.influx_v1 import InfluxV1Sink
from hub.sinks.influx_v2 import InfluxV2Sink
from hub.sinks.lineproto import encode_bytes, join
from hub.sinks.writer import Writer
from hub.spool import Spool, SpoolWriteError
from hub.trust.store import StoreError, TrustStore
from protocols import catalogue, confirm, liveness, ota, payloads, topics

if TYPE_CHECKING:
    from pathlib import Path

    from hub.config import HubConfig
    from hub.coverage import Place
    from hub.ingest.message import Message
    from hub.modbus.lease import Leases
    from hub.modbus.poller import ModbusService
    from hub.model import Reading
    from hub.sinks.base import Sink

log = logging.getLogger(__name__)

ACK_SUFFIX = "/" + topics.ACK
OTAACK_SUFFIX = "/" + ota.OTAACK
DRAIN_LIMIT = 2500
"""Messages taken per ingest round: half the broker's in-flight window (5000 in Qala's config), so the next
round arrives while this one is spooled and acknowledged."""

FILL_WARNINGS = (0.5, 0.8, 0.9)
NORTH_TASK = "qala-hub.north"

MAX_EXTRA = 500_000
"""Readings from outside MQTT (Modbus polls, control audit) held in RAM while the spool is full. MQTT
messages simply stay unacknowledged at the broker then; these have no such home, so past this bound (about
60 MB) the oldest are dropped and counted (`readings_dropped`) rather than the hub growing without limit."""


def make_sink(config: HubConfig) -> Sink:
    if config.influxdb.api == "v1":
        return InfluxV1Sink(config.influxdb)
    return InfluxV2Sink(config.influxdb)


def load_trust(config: HubConfig) -> TrustStore | None:
    """The provisioning store [trust] names (None in plain mode); StoreError naming the file at fault."""
    if config.trust.store is None:
        return None
    store = TrustStore.load(config.trust.store)
    if store.site != config.site.id:
        raise StoreError(f"{store.root}: the store is for site {store.site!r}, this hub's site.id is "
                         f"{config.site.id!r}")
    store.hub(config.trust.hub)  # StoreError naming the missing identity
    return store


class Hub:
    def __init__(self, config: HubConfig) -> None:  # noqa: PLR0915 - wires every part, one statement each
        """Raises StoreError when [trust]'s store cannot be used. Only the store's device ids are taken from
        MQTT; Modbus devices come from the config and are never filtered."""
        self.trust = load_trust(config)
        known: frozenset[str] | None = None
        if self.trust is not None:
            user, password = self.trust.hub(config.trust.hub)
            config = dataclasses.replace(config, mqtt=dataclasses.replace(config.mqtt, username=user,
                                                                          password=password))
            known = self.trust.devices()
        else:
            log.warning("trust: plain mode ([trust] plain = true): telemetry of every device id is stored and no "
                        "MQTT board can be commanded; a lab bench only")
        self.config = config
        state = self._state_folder(config.spool.path)
        self.metrics = Metrics()
        self.spool = Spool(state / "segments", config.spool.max_bytes)
        self.registry = Registry(state / "registry.json")
        self.tracker = SequenceTracker()
        self.processor = Processor(
            config.site.id, self.registry, self.tracker, self.metrics, require_birth=config.site.require_birth,
            known=known, sequences=config.mqtt.share_group is None and config.cluster is None,
        )
        self.sink = make_sink(config)
        self.writer = Writer(
            self.sink,
            self.spool,
            self.metrics,
            state / "dead-letter.lp",
            batch_size=config.batch.size,
            retry_min=config.influxdb.retry_min,
            retry_max=config.influxdb.retry_max,
        )
        site = config.site.id
        self.hub_topic = topics.hub_topic(site, config.trust.hub)
        self.broker: Broker = make_broker(config, on_connect=self._on_broker_connect)
        """The site's broker (hub.broker): one MQTT broker, or a RabbitMQ cluster with [cluster]."""
        self.several = config.mqtt.share_group is not None or config.cluster is not None
        """Other hubs read this site's acks and OTA messages too: those of theirs are expected here."""
        if self.several and (config.rules or config.schedules or config.alerts.actions):
            log.warning("automation on a hub among several: its [[rules]] and [[alerts.actions]] see only the part "
                        "of the telemetry this hub takes, and every hub that has a [[schedules]] entry sends it; "
                        "give them to one hub of the site (docs/scale.md, Limits)")
        self.modbus: ModbusService | None = None
        if config.modbus is not None and config.modbus.devices:
            from hub.modbus.poller import ModbusService  # noqa: PLC0415 - pymodbus only with Modbus devices

            self.modbus = ModbusService(config.modbus, site, leases=self._leases(config))
        self.signer: Signer | None = None
        if self.trust is not None:
            self.signer = Signer(site, self._keys(self.trust), Counter(state / "cmd-counter"))
        self.control = ControlService(
            site, config.control, self.registry, publish=self.broker.publish, emit=self.emit,
            modbus=self.modbus, rule_list=config.rules, schedules=config.schedules, signer=self.signer,
            journal=Journal(state / "commands.jsonl"), shared=self.several,
        )
        self.processor.watches = self.control.watches  # unwatched telemetry skips Readings (hot path)
        self.detectors = Detectors(config.detect)
        """The stream's detectors (hub.detect): fed by the processor, evaluated by `tick` in the service loop."""
        if self.detectors.enabled:
            self.processor.detect = self.detectors
        self.alerting = self._alerting(config, state)
        server = OtaServer(site, self._cmd_key, self.broker.publish, quiet_unknown=self.several,
                           emit=self.emit)
        self.ota = OtaService(site, config.ota, state, server, boards=self._ota_boards, online=self._online,
                              emit=self.emit, auditor=self.control)
        """Releases and roll-outs (hub.ota): offers, chunks and reports over `ota`/`otaack`."""
        self.confirms = self._confirmations(config)
        self._conf_topics: dict[str, str] = {}
        """device -> its conf topic (built once: a round may publish to every board of the site)."""
        self.api_port: int | None = None
        """The HTTP API's bound port once it listens (config.api.port, or the one chosen for port 0)."""
        self._extra: list[Reading] = []
        self._stop = asyncio.Event()
        self._closing = False
        self._fill_warned = 0.0
        self._full_logged = False
        self._disk_error: str | None = None
        """Why the spool's disk refused the last write (None while it takes them)."""
        self._disk_backoff = Backoff(0.5, 5.0)
        self._registry_error = False
        self._baseline: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        """Set once the spool backlog is queued and MQTT is connecting."""

    async def _load_baseline(self) -> None:
        """Once at start, in the background: the detectors' consumption baselines from what InfluxDB holds
        (hub.detect.baseline). A failure is logged; the baselines then start from the stream."""
        if not self.detectors.enabled:
            return
        try:
            loaded = await load_baseline(self.detectors, self.config.influxdb, self.config.site.id)
        except Exception as exc:  # noqa: BLE001 - InfluxDB down or answering badly: the stream builds them
            log.warning("detect: consumption baselines not loaded from InfluxDB, they start from the stream: %s",
                        exc)
            return
        log.info("detect: consumption baselines loaded from InfluxDB series=%d", loaded)

    @staticmethod
    def _leases(config: HubConfig) -> Leases | None:
        """With [cluster], each Modbus bus is polled by one hub of the site at a time (hub.modbus.lease)."""
        if config.cluster is None or config.modbus is None:
            return None
        from hub.modbus.lease import Leases  # noqa: PLC0415 - aio-pika only with [cluster]

        buses = dict.fromkeys(d.bus for d in config.modbus.devices)
        return Leases(config.cluster, config.mqtt, config.site.id, config.trust.hub, buses)

    def _alerting(self, config: HubConfig, state: Path) -> Alerting:
        """The alerting loop, and the northbound feed it hands alerts and summaries to; `self.detectors` and
        `self.north` are handed to it when the hub runs."""
        try:
            self.north: Northbound | None = make_northbound(config, config.site.id, self.broker.publish,
                                                            connected=lambda: self.broker.connected)
        except NorthError as exc:
            raise ConfigError(str(exc)) from None
        alerting = Alerting(config.site.id, config.alerts, state, emit=self.emit, places=self.places,
                            control=self.control, interval=config.detect.interval)  # [detect] paces the ticks
        self.processor.sample = alerting.values.sample  # each telemetry message's values (hot path: cheap)
        return alerting

    def _confirmations(self, config: HubConfig) -> Confirmations | None:
        """The marks to confirm (loaded from the last run), and the processor told to collect ids; None if off."""
        if not config.confirm and config.cluster is not None:
            log.info("confirmations off ([cluster]): a board's PUBACK from the cluster is its confirmation (a "
                     "majority of the telemetry queue's nodes stored the message); boards run with buffer.confirm "
                     "false")
            return None
        if not config.confirm:
            log.warning("confirmations off (%s): boards with buffer.confirm on keep and resend their records, and "
                        "a broker crash loses what it acknowledged since its last save",
                        "mqtt.share_group" if config.mqtt.share_group else "hub.confirm = false")
            return None
        confirms = Confirmations(config.gap_timeout)
        confirms.load(config.spool.path / "confirmed.json")
        self.processor.ids = []
        return confirms

    @staticmethod
    def _state_folder(state: Path) -> Path:
        try:
            state.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, no permission: the config names a folder this hub cannot have
            raise ConfigError(f"spool.path: cannot create {state}: {exc.strerror or exc}; give a folder the hub "
                              "may create and write") from None
        return state

    def _cmd_key(self, device: str) -> bytes | None:
        """The board's command key (OTA offers are signed with it); None in plain mode or for an unknown board."""
        return self.trust.cmd_key(device) if self.trust is not None else None

    def _ota_boards(self) -> dict[str, Facts]:
        """What roll-out selectors choose from: the provisioned boards (plain mode: every board heard from),
        their district (the store) and the firmware their last birth announced (the registry)."""
        known = self.registry.devices
        names = self.trust.devices() if self.trust is not None else frozenset(known)
        out = {}
        for name in names:
            entry = self.trust.entry(name) if self.trust is not None else None
            info = known.get(name)
            out[name] = Facts(district=None if entry is None else entry.district, fw=None if info is None else info.fw)
        return out

    def _online(self, device: str) -> bool:
        info = self.registry.devices.get(device)
        return info is not None and info.state != payloads.OFFLINE

    @staticmethod
    def _keys(store: TrustStore) -> dict[str, bytes]:
        return {device: key for device in store.devices() if (key := store.cmd_key(device)) is not None}

    def reload_trust(self) -> None:
        """Load the provisioning store again (SIGHUP): device ids and command keys as they are now. A store
        that does not load leaves everything as it was (logged)."""
        if self.config.trust.store is None:
            log.info("trust: plain mode, nothing to reload")
            return
        store: TrustStore | None = None
        try:
            store = load_trust(self.config)
        except StoreError as exc:
            problem = str(exc)
        if store is None:
            log.error("trust: reload refused, keeping the store loaded before: %s", problem)
            return
        before = self.trust.devices() if self.trust is not None else frozenset()
        self.trust = store
        self.processor.set_known(store.devices())
        if self.signer is not None:
            self.signer.replace_keys(self._keys(store))
        log.info("trust: store reloaded devices=%d added=%d removed=%d", len(store.devices()),
                 len(store.devices() - before), len(before - store.devices()))

    def _on_broker_connect(self) -> None:  # as the broker's CONNACK is read
        self.metrics.mqtt_connects += 1
        self._announce()

    def _announce(self) -> None:
        """The hub's liveness, retained: boards count the hub lost after 3 heartbeats without one."""
        state = liveness.encode_hub_state(liveness.ONLINE, int(time.time() * 1000), self.config.heartbeat)
        self.broker.publish(self.hub_topic, state, retain=True)

    async def _confirm_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.confirm_interval)
            await self._confirm_round()

    async def _confirm_round(self) -> None:
        """Save the marks that moved, then publish them (a board is never told more than a restart keeps)."""
        confirms = self.confirms
        if confirms is None:
            return
        due = confirms.due(time.monotonic())
        if not due:
            return
        try:
            await asyncio.to_thread(confirms.save, self.config.spool.path / "confirmed.json")
        except OSError as exc:
            log.warning("confirmation: marks not saved, not sent this round (boards keep their records) error=%s",
                        exc.strerror or exc)
            confirms.again(due)
            return
        site = self.config.site.id
        cached = self._conf_topics
        publish = self.broker.publish
        for device, boot, seq in due:
            topic = cached.get(device)
            if topic is None:
                topic = cached[device] = topics.build(site, device, topics.CONF)
            publish(topic, confirm.encode_conf(boot, seq), qos=0, retain=True)
        self.metrics.confirmations_sent += len(due)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat)
            if self.broker.connected:
                self._announce()

    def emit(self, readings: list[Reading]) -> None:
        """Store Readings made outside the ingest (control audit): spooled with the next batch."""
        extra = self._extra
        extra.extend(readings)
        over = len(extra) - MAX_EXTRA
        if over > 0:
            del extra[:over]
            if not self.metrics.readings_dropped:
                log.error("spool full for too long: dropping the oldest Modbus and audit readings held in RAM "
                          "held=%d (counted in qala_hub.readings_dropped)", MAX_EXTRA)
            self.metrics.readings_dropped += over
        self.broker.wakeup.set()

    def ingest(self, readings: list[Reading]) -> None:
        """Readings from a source other than MQTT (the Modbus poller): the control rules and the detectors see
        them, as they see MQTT readings, coverage keeps their last values, and they are spooled with the next
        batch."""
        self.control.observe(readings)
        self.alerting.values.observe(readings)
        if self.processor.detect is not None:
            self._detect(readings)
        self.emit(readings)

    def places(self) -> dict[str, Place]:
        """The devices the site expects (provisioned boards, configured Modbus devices) and where they are."""
        modbus = self.config.modbus.devices if self.config.modbus is not None else ()
        pollers = self.modbus.pollers if self.modbus is not None else {}

        def online(name: str) -> bool | None:
            poller = pollers.get(name)
            return None if poller is None else poller.online

        return site_places(self.trust, self.registry, modbus, online, self.alerting.values)

    def _detect(self, readings: list[Reading]) -> None:
        """Modbus readings to the detectors, one sample per device, sensor and time (a poll's registers)."""
        samples: dict[tuple[str, str, int], list[tuple[str, float, str]]] = {}
        for r in readings:
            if r.field in catalogue.QUANTITIES and isinstance(r.value, (int, float)):
                samples.setdefault((r.device, r.sensor, r.ts), []).append((r.field, float(r.value), r.quality))
        now_ms = int(time.time() * 1000)
        for (device, sensor, ts), values in samples.items():
            self.detectors.sample(device, sensor, ts, values, now_ms, gap=False)

    async def modbus_write(self, device: str, register: str, value: float) -> float:
        """Write a setpoint to a Modbus device (ahead of polls) and return the value read back.

        Raises LookupError without a [modbus] device section, else what ModbusService.write raises.
        """
        if self.modbus is None:
            raise LookupError("no Modbus devices configured")
        return await self.modbus.write(device, register, value)

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("hub: stopping")
        self._stop.set()
        self.broker.wakeup.set()

    # --------------------------------------------------------------------------------------- run

    async def run(self) -> None:
        backlog = self.spool.recover()
        if backlog:
            log.info("hub: sending the spooled backlog first segments=%d points=%d bytes=%d",
                     len(backlog), sum(s.points for s in backlog), self.spool.used_bytes)
        self.writer.submit(backlog)
        writer = asyncio.create_task(self.writer.run(), name="qala-hub.writer")
        ingest = asyncio.create_task(self._ingest(), name="qala-hub.ingest")
        housekeeping = asyncio.create_task(self._housekeeping(), name="qala-hub.housekeeping")
        control = asyncio.create_task(self.control.run(), name="qala-hub.control")
        heartbeat = asyncio.create_task(self._heartbeat(), name="qala-hub.heartbeat")
        others: list[asyncio.Task[None]] = [housekeeping, control, heartbeat]
        if self.confirms is not None:
            others.append(asyncio.create_task(self._confirm_loop(), name="qala-hub.confirm"))
        if self.modbus is not None:
            others.append(asyncio.create_task(self.modbus.run(self.ingest), name="qala-hub.modbus"))
        self.alerting.detectors = self.detectors
        self.alerting.north = self.north
        others.append(asyncio.create_task(self.alerting.run(), name="qala-hub.alerting"))
        self._baseline = asyncio.create_task(self._load_baseline(), name="qala-hub.baseline")
        self.ota.load()
        others.append(asyncio.create_task(self.ota.run(), name="qala-hub.ota"))
        if self.north is not None and self.north.enabled:
            others.append(asyncio.create_task(self.north.run(), name=NORTH_TASK))
        if self.config.api is not None:
            from hub.control.api import serve_api  # noqa: PLC0415 - aiohttp only when the API is on
            from hub.ota.api import add_routes  # noqa: PLC0415

            self.api_port, api = await serve_api(self.config.api, self.control, self.alerting,
                                                 more=lambda app: add_routes(app, self.ota))
            others.append(asyncio.create_task(api, name="qala-hub.api"))
        self.broker.start()
        log.info("hub: running site=%s influxdb=%s spool=%s", self.config.site.id, self.sink.description,
                 self.config.spool.path)
        self.ready.set()
        stop = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait({stop, ingest, writer, *others}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stop}:
                task.result()  # a crashed task: re-raise after the shutdown below
                raise RuntimeError(f"{task.get_name()} ended unexpectedly")
        finally:
            await self._shutdown(ingest, writer, *others, stop)

    async def _stop_loops(self, tasks: tuple[asyncio.Task[object], ...]) -> None:
        """Cancel the service's loops; the alerts are saved and the northbound feed hands over what waits
        (its MQTT documents; webhooks get a few seconds)."""
        if self._baseline is not None:
            self._baseline.cancel()
        for task in tasks:
            if task.get_name() != NORTH_TASK:
                task.cancel()
        self.alerting.close()
        if self.north is not None:
            await self.north.close()

    async def _shutdown(
        self,
        ingest: asyncio.Task[None],
        writer: asyncio.Task[None],
        *others: asyncio.Task[object],
    ) -> None:
        self._closing = True
        self.broker.close_intake()
        self.broker.wakeup.set()
        await self._stop_loops(others)
        if not ingest.done():
            await ingest  # spools and acknowledges everything taken so far
        await self._confirm_round()  # what the last batches stored
        if self.broker.connected:  # a clean stop sends no will: say it, boards fail safe after failsafe_after
            self.broker.publish(self.hub_topic, liveness.encode_hub_state(liveness.OFFLINE), retain=True)
        await self.broker.stop()
        self._extra.extend(self._snapshot())
        if self._disk_error is None:
            await self._spool_extra()
        else:  # nothing more can be written: what MQTT brought stays at the broker (never acknowledged)
            log.error("hub: stopping with the spool's disk failing; Modbus and audit readings held in RAM are not "
                      "stored held=%d error=%s", len(self._extra), self._disk_error)
        try:
            sealed = self.spool.close()
        except SpoolWriteError as exc:
            log.error("hub: cannot seal the open segment at shutdown; it is sealed at the next start error=%s", exc)  # noqa: TRY400 - a disk condition
            sealed = None
        self.writer.submit(filter(None, [sealed]))
        if not writer.done():
            try:
                async with asyncio.timeout(self.config.shutdown_timeout):
                    await self.writer.idle.wait()
            except TimeoutError:
                log.warning("hub: stopping with data still spooled (sent at next start) segments=%d bytes=%d",
                            self.spool.segments, self.spool.used_bytes)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        await self.sink.close()
        self._save_registry()
        log.info("hub: stopped spool_segments=%d spool_bytes=%d", self.spool.segments, self.spool.used_bytes)

    # ------------------------------------------------------------------------------------ ingest

    async def _ingest(self) -> None:
        broker = self.broker
        spool = self.spool
        batch = self.config.batch
        while True:
            if spool.full:
                if self._closing:
                    return  # what is still queued was never acknowledged: the broker keeps it
                await self._wait_for_space()
                continue
            if not broker.queue and not self._extra:
                if self._closing:
                    return
                await self._wait_for_input()
            messages = broker.drain(DRAIN_LIMIT)
            readings, self._extra = self._extra, []
            now_ms = int(time.time() * 1000)
            lines: list[str] = []
            readings += self._take(messages, now_ms, lines)
            ids = self.processor.take_ids()
            if (readings or lines) and not await self._append(readings, lines):
                return  # stopping while the disk refuses: these messages stay unacknowledged at the broker
            if ids and self.confirms is not None:
                self.confirms.spooled(ids, time.monotonic())  # in the spool, fsynced: may be confirmed
            self.ota.flush()  # the roll-outs the boards' reports changed, on disk before their acks
            if messages:
                broker.ack(messages)
            if spool.open_points and (
                spool.open_points >= batch.size or spool.open_age() >= batch.flush_interval or self._closing
            ):
                self._seal()
            self._check_fill()

    def _take(self, messages: list[Message], now_ms: int, lines: list[str]) -> list[Reading]:
        """Readings of a batch of messages; acks go to the control service, readings feed its rules too.

        Telemetry that no rule watches comes back as line protocol in `lines` instead (no Reading objects).
        """
        readings: list[Reading] = []
        process = self.processor.process
        for message in messages:
            if message.topic.endswith(ACK_SUFFIX):
                self._ack(message.topic, message.payload)
            elif message.topic.endswith(OTAACK_SUFFIX):
                self._otaack(message.topic, message.payload)
            else:
                readings += process(message.topic, message.payload, now_ms, lines)
        self.control.observe(readings)
        return readings

    def _ack(self, topic: str, payload: bytes) -> None:
        device = self.processor.ack_device(topic)  # None: bad topic, other site or unprovisioned (counted)
        if device is not None:
            self.control.on_ack(device, payload)

    def _otaack(self, topic: str, payload: bytes) -> None:
        """A board's OTA message: a chunk request answered by the server, a signed report to the roll-outs."""
        device = self.processor.ack_device(topic)  # None: bad topic, other site or unprovisioned (counted)
        if device is None:
            return
        try:
            report = self.ota.server.on_message(device, payload)
            if report is not None:
                self.ota.on_report(device, report)
        except Exception:  # a bad message is counted and logged by the server; this is a bug's safety net
            log.exception("ota: message from device=%s not handled", device)

    async def _wait_for_input(self) -> None:
        """Until a message arrives, a stop is requested or the open segment is due to be sealed."""
        timeout = None
        if self.spool.open_points:
            timeout = max(0.0, self.config.batch.flush_interval - self.spool.open_age())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.broker.wakeup.wait()

    async def _append(self, readings: list[Reading], lines: list[str] | None = None) -> bool:
        """Spool the batch (fsynced). While the disk refuses, try again every few seconds (the intake waits:
        nothing is acknowledged meanwhile); False if a stop came first (nothing was written)."""
        body, points = encode_bytes(readings)
        if lines:
            body += join(lines)
            points += len(lines)
        if not points:
            return True
        while True:
            try:
                await asyncio.to_thread(self.spool.append, body, points)
            except SpoolWriteError as exc:
                self._disk_failed(exc)
                self.writer.submit(self.spool.take_orphans())  # what the disk holds is still sent
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._disk_backoff.next()):
                        await self._stop.wait()
                if self._stop.is_set():
                    return False
                continue
            break
        self.writer.submit(self.spool.take_orphans())
        if self._disk_error is not None:
            log.warning("spool: writes succeed again, taking messages path=%s", self.spool.dir)
            self._disk_error = None
            self._disk_backoff.reset()
        self.metrics.points_spooled += points
        return True

    def _disk_failed(self, exc: SpoolWriteError) -> None:
        self.metrics.spool_write_errors += 1
        if self._disk_error is None:
            log.error("SPOOL CANNOT BE WRITTEN: %s; not taking MQTT messages until the disk takes writes again "
                      "(the broker keeps them; InfluxDB is still sent what is spooled), retrying every few seconds",
                      exc)
        self._disk_error = str(exc)

    def _save_registry(self) -> None:
        try:
            self.registry.save()
        except OSError as exc:
            if not self._registry_error:
                log.error("registry: cannot save path=%s error=%s; kept in memory, saved again later",  # noqa: TRY400 - a disk condition
                          self.registry.path, exc.strerror or exc)
            self._registry_error = True
        else:
            self._registry_error = False

    async def _spool_extra(self) -> None:
        readings, self._extra = self._extra, []
        if readings:
            await self._append(readings)

    def _seal(self) -> None:
        try:
            segment = self.spool.seal()
        except SpoolWriteError as exc:
            self._disk_failed(exc)  # the segment stays open: sealed at the next round
            return
        if segment is not None:
            self.writer.submit([segment])

    def _check_fill(self) -> None:
        fill = self.spool.fill
        crossed = max((level for level in FILL_WARNINGS if fill >= level), default=0.0)
        if crossed > self._fill_warned:
            log.warning("spool filling: InfluxDB is not keeping up or is down fill=%.0f%% bytes=%d max_bytes=%d",
                        100 * fill, self.spool.used_bytes, self.spool.max_bytes)
        self._fill_warned = crossed

    async def _wait_for_space(self) -> None:
        if not self._full_logged:
            self.metrics.spool_full_events += 1
            log.error("SPOOL FULL: not taking MQTT messages until InfluxDB accepts the backlog; the broker "
                      "queues them meanwhile bytes=%d max_bytes=%d", self.spool.used_bytes, self.spool.max_bytes)
            self._full_logged = True
        self._seal()
        self.writer.space.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.batch.flush_interval):
                await self.writer.space.wait()
        if not self.spool.full:
            log.warning("spool has room again, taking messages bytes=%d", self.spool.used_bytes)
            self._full_logged = False

    # ------------------------------------------------------------------------------ housekeeping

    def _snapshot(self) -> list[Reading]:
        spool = self.spool
        gauges = {
            "spool_bytes": float(spool.used_bytes),
            "spool_segments": float(spool.segments),
            "spool_fill": spool.fill,
            "spool_full": 1.0 if spool.full else 0.0,
            "spool_write_failing": 0.0 if self._disk_error is None else 1.0,
            "writer_pending": float(self.writer.pending),
            "mqtt_connected": 1.0 if self.broker.connected else 0.0,
            "mqtt_queue": float(len(self.broker.queue)),
            "seq_gaps": float(self.tracker.gaps),
            "seq_late": float(self.tracker.late),
            "seq_duplicates": float(self.tracker.duplicates),
            "seq_reboots": float(self.tracker.reboots),
            "confirm_gaps_given_up": float(self.confirms.gaps_given_up if self.confirms is not None else 0),
            "devices": float(len(self.registry.devices)),
            "alerts_open": float(len(self.alerting.book.open)),
            "alerts_suppressed": float(self.alerting.book.suppressed),
            "alert_actions": float(self.alerting.actions_sent),
        } | self.ota.fields() | (self.north.fields() if self.north is not None else {}) | (
            self.modbus.fields() if self.modbus is not None else {})
        return self.metrics.snapshot(self.config.site.id, self.config.mqtt.client_id, int(time.time() * 1000), gauges)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.config.metrics.interval)
            self._extra.extend(self._snapshot())
            self.broker.wakeup.set()
            self._save_registry()
            self.processor.floodlog.tick()


async def serve(config: HubConfig) -> None:
    """Run a hub until SIGTERM or SIGINT; SIGHUP reloads the provisioning store."""
    hub = Hub(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, hub.request_stop)
    loop.add_signal_handler(signal.SIGHUP, hub.reload_trust)
    try:
        await hub.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
