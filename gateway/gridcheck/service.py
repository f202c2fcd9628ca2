"""The power-flow grid check's background service: what the check knows, told.

- Traffic lights: each congestion point in a grid zone gets its USEF regime (green, yellow,
  orange, red) for the current ISP and the later ISPs of today, published RETAINED (QoS 1)
  to `<prefix>/grid/<congestion point>/traffic-light` of every aggregator with resources
  behind it and of the DSO owning it (those with an `mqtt_prefix`). A message is published
  when a colour or a binding element changes, at each ISP boundary and after a failed
  publish; the lights are evaluated again after a base-state change (the check's
  listeners), after accepted orders (the ledger is polled, `[gridcheck.service]
  poll_seconds`) and at each ISP boundary.
- Re-validation: a base-state change (a model, a forecast, a temporary limit) schedules
  `revalidate(zone, period)`: debounced, one task per zone. Each run is one audit entry
  `gridcheck.revalidated`; unsafe orders are also reported to the zone's DSO on
  `<prefix>/grid/<zone>/revalidation` (not retained), through the outbox in the same commit
  as the audit entry, and kept for the operator API.
- Expiry: at start and when the local day turns, orders of past periods give their power back.
- Temporary limits on record (`temporary_limits`, set through the operator API or by a
  Capacity_MarketDocument): at start-up, before anything is checked, every one not cleared
  that has not ended is back in force under its own id (`load`).

Everything runs on the event loop, in slices: the check is not thread-safe (its state cache
and ledger are the pipeline's hot path), so no worker thread touches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import select

from gateway.audit.chain import AuditDraft
from gateway.errors import GridgateError
from gateway.gridcheck.base import Binding
from gateway.gridcheck.grid import load_model
from gateway.gridcheck.powerflow import GridRegime, PowerFlowCheck, UnsafeOrder
from gateway.model import Market, isp_count, isp_start, period_bounds
from gateway.outbox import Outbox, outbox_row
from gateway.store.models import TemporaryLimitRecord
from gateway.store.writer import Unit, Writer
from gateway.tasks import spawn

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gateway.config import GridServiceSettings, Settings
    from gateway.routing import Directory, Participant

log = logging.getLogger(__name__)

# the event loop gets a turn after this much work of the lights (s)
SLICE_SECONDS = 0.005
# MQTT 3.1.1 §4.7.1: these cannot be part of one topic level; they are percent-encoded
_TOPIC_UNSAFE = {"/": "%2F", "+": "%2B", "#": "%23", "%": "%25", "\x00": "%00"}


@runtime_checkable
class RetainedPublisher(Protocol):
    """A channel that can publish a retained message (the MQTT link)."""

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None: ...


def model_files(paths: Iterable[Path]) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime in ns) of a zone's model files (a folder: its *.xml), to tell when
    an operator replaced them; a missing file is (name, -1, -1)."""
    found: list[Path] = []
    for path in paths:
        found += sorted(path.glob("*.xml")) if path.is_dir() else [path]
    out = []
    for path in found:
        try:
            stat = path.stat()
            out.append((str(path), stat.st_size, stat.st_mtime_ns))
        except OSError:
            out.append((str(path), -1, -1))
    return tuple(out)


def topic_level(text: str) -> str:
    """`text` as one MQTT topic level: /, +, #, % and NUL percent-encoded."""
    return "".join(_TOPIC_UNSAFE.get(c, c) for c in text)


def traffic_light_topic(prefix: str, congestion_point: str) -> str:
    return f"{prefix}/grid/{topic_level(congestion_point)}/traffic-light"


def revalidation_topic(prefix: str, zone: str) -> str:
    return f"{prefix}/grid/{topic_level(zone)}/revalidation"


def binding_json(binding: Binding | None) -> dict[str, Any] | None:
    if binding is None:
        return None
    return {
        "id": binding.element,
        "type": binding.element_type,
        "metric": binding.metric,
        "predicted": binding.predicted,
        "limit": binding.limit,
    }


def unsafe_json(order: UnsafeOrder) -> dict[str, Any]:
    return {
        "origin": order.origin,
        "message_id": order.order_message_id,
        "congestion_point": order.congestion_point,
        "period": order.period.isoformat(),
        "isp": order.isp,
        "binding": binding_json(order.binding),
        "reason": order.reason,
    }


@dataclass(frozen=True, slots=True)
class Revalidation:
    """One re-validation run of a zone and what it found."""

    zone: str
    period: date | None  # None: every period
    at: datetime
    unsafe: tuple[UnsafeOrder, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "period": self.period.isoformat() if self.period else None,
            "at": self.at.isoformat(),
            "unsafe": [unsafe_json(u) for u in self.unsafe],
        }


@dataclass(frozen=True, slots=True)
class ApiLimit:
    """A temporary limit set through the operator API, and by whom."""

    id: str
    zone: str
    interface_limit_w: float
    start: datetime
    end: datetime
    reason: str
    set_by: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "zone": self.zone,
            "interface_limit_w": self.interface_limit_w,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "reason": self.reason,
            "set_by": self.set_by,
            "source": "api",
        }


class GridService:
    """Traffic lights, re-validation and expiry around one PowerFlowCheck."""

    def __init__(
        self,
        check: PowerFlowCheck,
        settings: Settings,
        directory: Directory,
        writer: Writer,
        outbox: Outbox,
        *,
        report_channel: str | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.check = check
        self.directory = directory
        self.config: GridServiceSettings = settings.gridcheck.service
        self.market = Market(settings.market.isp, settings.market.time_zone)
        self.zones = {z.id: z for z in settings.gridcheck.zones}
        self._writer = writer
        self._outbox = outbox
        self._report_channel = report_channel
        self._report_validity = timedelta(hours=self.config.report_validity_hours)
        self._clock = clock
        # congestion points per zone (those with a grid zone only: no model, no light)
        self.zone_cps: dict[str, list[str]] = {z: [] for z in self.zones}
        for cp, cp_settings in directory.congestion_points.items():
            if cp_settings.zone in self.zone_cps:
                self.zone_cps[cp_settings.zone].append(cp)
        # who sees each congestion point's light on MQTT: its DSO and its aggregators
        self._recipients = {
            cp: self._recipients_of(cp) for cps in self.zone_cps.values() for cp in cps
        }
        self._publisher: RetainedPublisher | None = None
        # today's lights: the period they are of, per congestion point per ISP
        self._period: date | None = None
        self._isp = 0
        self._lights: dict[str, dict[int, GridRegime]] = {}
        # ISPs of today to evaluate again per zone (None: all of them)
        self._dirty: dict[str, set[int] | None] = {}
        # the ledger as last seen: per zone, per ISP, the power at each congestion point
        self._ledger_seen: dict[str, dict[int, tuple[int, ...]]] = {}
        # per topic, what its last successful publish said (colour and binding per ISP)
        self.published: dict[str, tuple[Any, ...]] = {}
        self._wake = asyncio.Event()
        self._lights_task: asyncio.Task[None] | None = None
        # re-validation: the periods waiting per zone (None: all), the task running per zone
        self._pending: dict[str, set[date] | None] = {}
        self._revalidating: dict[str, asyncio.Task[None]] = {}
        self.latest: dict[str, Revalidation] = {}
        self.api_limits: dict[str, ApiLimit] = {}
        self._running = False
        # the zones' model files as last loaded (name, size, mtime), and the task watching
        self._model_files: dict[str, tuple[tuple[str, int, int], ...]] = {}
        self._models_task: asyncio.Task[None] | None = None

    # -- life cycle -----------------------------------------------------------------------

    async def load(self, engine: AsyncEngine) -> None:
        """Put the temporary limits on record back in force (at start-up, after the ledger).

        Every limit not cleared whose end is still ahead is set in the check under its own
        id; those set through the operator API are listed and can be cleared again. A limit
        of a zone no longer configured cannot bind anything: it is logged and left out."""
        now = self._clock()
        record = TemporaryLimitRecord
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(record)
                    .where(record.cleared_at.is_(None), record.ends_at > now)
                    .order_by(record.set_at, record.id)
                )
            ).all()
        restored = 0
        for row in rows:
            try:
                self.check.set_temporary_limit(
                    row.zone,
                    row.interface_limit_w,
                    start=row.starts_at,
                    end=row.ends_at,
                    reason=row.reason,
                    limit_id=row.id,
                )
            except ValueError as e:
                log.error(
                    "gridcheck: temporary limit %s (set by %s) is on record but not restored: %s",
                    row.id,
                    row.set_by,
                    e,
                )
                continue
            restored += 1
            if row.source == "api":
                self.api_limits[row.id] = ApiLimit(
                    row.id,
                    row.zone,
                    row.interface_limit_w,
                    row.starts_at,
                    row.ends_at,
                    row.reason,
                    row.set_by,
                )
        if restored:
            log.info("gridcheck: %d temporary limit(s) on record back in force", restored)

    async def start(self, publisher: RetainedPublisher | None) -> None:
        """Expire past periods, listen to the check and start publishing the lights."""
        self._publisher = publisher
        self._expire(self.today())
        self.check.listeners.append(self.changed)
        self._running = True
        self._lights_task = spawn(self._run_lights(), name="gridcheck-traffic-lights")
        self._model_files = {z: model_files(self.zones[z].model) for z in self.zones}
        self._models_task = spawn(self._watch_models(), name="gridcheck-models")

    async def stop(self) -> None:
        self._running = False
        with contextlib.suppress(ValueError):
            self.check.listeners.remove(self.changed)
        tasks = [
            t
            for t in (self._lights_task, self._models_task, *self._revalidating.values())
            if t is not None
        ]
        self._lights_task = self._models_task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._revalidating.clear()
        self._pending.clear()

    # -- time -----------------------------------------------------------------------------

    def today(self) -> date:
        return self._clock().astimezone(self.market.zone).date()

    def current_isp(self, now: datetime | None = None) -> tuple[date, int]:
        """(today, the ISP `now` lies in), in the market's time zone."""
        now = now or self._clock()
        period = now.astimezone(self.market.zone).date()
        start, _ = period_bounds(period, self.market.time_zone)
        return period, (now - start) // self.market.isp_duration + 1

    def isp_count(self, period: date) -> int:
        return isp_count(period, self.market.time_zone, self.market.isp_duration)

    def isp_start(self, period: date, isp: int) -> datetime:
        return isp_start(period, self.market.time_zone, self.market.isp_duration, isp)

    # -- base-state changes ---------------------------------------------------------------

    def changed(self, zone: str, period: date | None) -> None:
        """The check's listener: a zone's base state changed; re-evaluate and re-validate."""
        if not self._running or zone not in self.zones:
            return
        if period is None or period == self._period:
            self._dirty[zone] = None
            self._wake.set()
        self._schedule_revalidation(zone, period)

    def _schedule_revalidation(self, zone: str, period: date | None) -> None:
        if zone in self._pending:
            waiting = self._pending[zone]
            if waiting is not None and period is not None:
                waiting.add(period)
            else:
                self._pending[zone] = None
        else:
            self._pending[zone] = None if period is None else {period}
        if zone not in self._revalidating:
            self._revalidating[zone] = spawn(
                self._revalidate_zone(zone), name=f"gridcheck-revalidate:{zone}"
            )

    async def _revalidate_zone(self, zone: str) -> None:
        """Run what is pending for a zone until nothing is: one task per zone at a time."""
        try:
            while self._running and zone in self._pending:
                await asyncio.sleep(self.config.debounce_seconds)
                periods = self._pending.pop(zone, None)
                for period in [None] if periods is None else sorted(periods):
                    try:
                        await self.revalidate(zone, period)
                    except Exception:
                        log.exception("re-validation of zone %s (%s) failed", zone, period)
                    await asyncio.sleep(0)  # one period a slice
        finally:
            self._revalidating.pop(zone, None)

    async def revalidate(self, zone: str, period: date | None) -> Revalidation:
        """Re-check a zone's accepted orders; audit the run, report unsafe orders to its DSO."""
        unsafe = tuple(self.check.revalidate(zone, period))
        now = self._clock()
        run = Revalidation(zone, period, now, unsafe)
        detail: dict[str, Any] = {
            "zone": zone,
            "period": period.isoformat() if period else "all",
            "unsafe_orders": len(unsafe),
        }
        if unsafe:
            detail["unsafe"] = [unsafe_json(u) for u in unsafe]
        unit = Unit(
            audit=[
                AuditDraft(event="gridcheck.revalidated", actor="gridgate", detail=detail, ts=now)
            ]
        )
        dso = self.directory.participants.get(self.zones[zone].dso)
        if unsafe and dso is not None and dso.mqtt_prefix and self._report_channel:
            report = json.dumps(
                {"published_at": now.isoformat(), **run.as_json()}, separators=(",", ":")
            ).encode()
            message_id = str(uuid.uuid4())
            unit.outbox.append(
                outbox_row(
                    channel=self._report_channel,
                    destination=revalidation_topic(dso.mqtt_prefix, zone),
                    recipient=dso.id,
                    payload=report,
                    message_id=message_id,
                    conversation_id=f"gridcheck-revalidation:{zone}",
                    expires_at=now + self._report_validity,
                    now=now,
                    claimed_until=now + self._outbox.lease,
                )
            )
            detail["reported"] = {"to": dso.id, "message_id": message_id}
        committed = await self._writer.submit(unit)
        if unit.outbox:
            self._outbox.hand_over(unit.outbox, committed.outbox_ids)
        self.latest[zone] = run
        if unsafe:
            log.warning(
                "gridcheck: re-validation of zone %s found %d unsafe order(s)", zone, len(unsafe)
            )
        return run

    # -- model files ----------------------------------------------------------------------

    async def _watch_models(self) -> None:
        while self._running:
            await asyncio.sleep(self.config.model_poll_seconds)
            for zone in self.zones:
                try:
                    await self.reload_model(zone)
                except Exception:
                    log.exception("gridcheck: model of zone %s could not be looked at", zone)

    async def reload_model(self, zone: str) -> str | None:
        """Load the zone's model again if its files changed since they were loaded, and swap
        it in (the check re-validates); a model that fails to load leaves the old one in
        place. Both are audited. Returns the new model's version, or None."""
        settings = self.zones[zone]
        files = model_files(settings.model)
        if files == self._model_files.get(zone):
            return None
        self._model_files[zone] = files  # tried once per change of the files
        source = settings.model[0] if len(settings.model) == 1 else settings.model
        now = self._clock()
        try:
            model = await asyncio.to_thread(load_model, source, zone=zone, format=settings.format)
            self.check.set_model(model)
        except (OSError, ValueError, KeyError) as e:
            log.error("gridcheck: new model of zone %s refused, the old one stays: %s", zone, e)
            detail = {"zone": zone, "files": [f[0] for f in files], "error": str(e)}
            await self._writer.submit(
                Unit(
                    audit=[
                        AuditDraft(
                            event="gridcheck.model_refused",
                            actor="gridgate",
                            detail=detail,
                            ts=now,
                        )
                    ]
                )
            )
            return None
        log.info("gridcheck: zone %s now runs on model %s", zone, model.version)
        detail = {
            "zone": zone,
            "version": model.version,
            "time_stamp": model.created.isoformat(),
            "files": [f[0] for f in files],
        }
        await self._writer.submit(
            Unit(
                audit=[
                    AuditDraft(
                        event="gridcheck.model_loaded", actor="gridgate", detail=detail, ts=now
                    )
                ]
            )
        )
        return model.version

    # -- traffic lights -------------------------------------------------------------------

    def _expire(self, today: date) -> None:
        released = self.check.expire(today)
        if released:
            log.info("gridcheck: %d order(s) of periods before %s released", released, today)

    async def _run_lights(self) -> None:
        while self._running:
            self._wake.clear()  # a change while the round runs wakes the next one at once
            try:
                await self._lights_round()
            except Exception:  # a bug or the broker: log it, try again next round
                log.exception("gridcheck: traffic lights round failed")
            period, isp = self.current_isp()
            boundary = self.isp_start(period, isp) + self.market.isp_duration
            until_boundary = (boundary - self._clock()).total_seconds()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that coincides with the event being set, and stop() would wait forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(
                    max(0.01, min(self.config.poll_seconds, until_boundary))
                ):
                    await self._wake.wait()

    async def _lights_round(self) -> None:
        """Evaluate what changed (day, ISP, ledger, base state) and publish what turned."""
        period, isp = self.current_isp()
        if period != self._period:  # the local day turned: yesterday's orders are over
            if self._period is not None:
                self._expire(period)
            self._period, self._isp = period, isp
            self._lights.clear()
            self._ledger_seen.clear()
            self._dirty = dict.fromkeys(self.zones)
        elif isp != self._isp:  # an ISP boundary: every light again (ages move too)
            self._isp = isp
            self._dirty = dict.fromkeys(self.zones)
        self._poll_ledger(period, isp)
        await self._evaluate(period, isp)
        if self._publisher is not None:
            await self._publish(period, isp)

    def _poll_ledger(self, period: date, current: int) -> None:
        """Mark the ISPs of a zone whose accepted power moved since the last look."""
        last = self.isp_count(period)
        for zone, cps in self.zone_cps.items():
            seen = self._ledger_seen.setdefault(zone, {})
            for i in range(current, last + 1):
                now = tuple(self.check.accepted_power(cp, period, i) for cp in cps)
                if seen.get(i) != now:
                    seen[i] = now
                    dirty = self._dirty.get(zone, set())
                    if dirty is not None:
                        dirty.add(i)
                        self._dirty[zone] = dirty

    async def _evaluate(self, period: date, current: int) -> None:
        dirty, self._dirty = self._dirty, {}
        last = self.isp_count(period)
        began = time.perf_counter()
        for zone, isps in dirty.items():
            todo = range(current, last + 1) if isps is None else sorted(isps)
            for cp in self.zone_cps[zone]:
                lights = self._lights.setdefault(cp, {})
                for i in todo:
                    if i < current or i > last:
                        continue
                    lights[i] = self.check.traffic_light(cp, period, i)
                    if time.perf_counter() - began > SLICE_SECONDS:
                        await asyncio.sleep(0)
                        began = time.perf_counter()

    def _recipients_of(self, cp: str) -> list[Participant]:
        """Who sees a congestion point's light on MQTT: its DSO and its aggregators."""
        out = []
        owner = self.directory.owner_of.get(cp)
        if owner is not None and owner.mqtt_prefix:
            out.append(owner)
        for (agr_id, at), resources in self.directory.resources_at.items():
            agr = self.directory.participants.get(agr_id)
            if at == cp and resources and agr is not None and agr.mqtt_prefix:
                out.append(agr)
        return out

    async def _publish(self, period: date, current: int) -> None:
        assert self._publisher is not None
        for cps in self.zone_cps.values():
            for cp in cps:
                lights = self._lights.get(cp, {})
                shown = [(i, lights[i]) for i in sorted(lights) if i >= current]
                if not shown:
                    continue
                said = (
                    period,
                    current,
                    tuple(
                        (i, r.colour.value, r.binding.element if r.binding else None)
                        for i, r in shown
                    ),
                )
                payload: bytes | None = None
                for participant in self._recipients[cp]:
                    assert participant.mqtt_prefix is not None
                    topic = traffic_light_topic(participant.mqtt_prefix, cp)
                    if self.published.get(topic) == said:
                        continue
                    if payload is None:
                        payload = self.light_payload(cp, period, shown)
                    try:
                        await self._publisher.publish(topic, payload, retain=True)
                    except GridgateError as e:  # the next round publishes it again
                        log.info("gridcheck: traffic light not published on %s: %s", topic, e)
                        continue
                    self.published[topic] = said

    def light_json(self, cp: str, period: date, isp: int, regime: GridRegime) -> dict[str, Any]:
        """One congestion point's light in one ISP, as the API and MQTT show it."""
        zone = self.directory.congestion_points[cp].zone
        model = self.check.model_of(zone) if zone else None
        return {
            "congestion_point": cp,
            "zone": zone,
            "period": period.isoformat(),
            "isp": isp,
            "isp_start": self.isp_start(period, isp).isoformat(),
            "colour": regime.colour.value,
            "headroom": regime.headroom,
            "binding": binding_json(regime.binding),
            "reason": regime.reason,
            "model_version": model.version if model else None,
        }

    def light_payload(
        self, cp: str, period: date, shown: Iterable[tuple[int, GridRegime]]
    ) -> bytes:
        """The retained message: the current ISP's light, then the later ISPs of today."""
        (isp, regime), *later = shown
        body = self.light_json(cp, period, isp, regime)
        body["published_at"] = self._clock().isoformat()
        body["later"] = [
            {
                "isp": i,
                "isp_start": self.isp_start(period, i).isoformat(),
                "colour": r.colour.value,
                "headroom": r.headroom,
                "binding": binding_json(r.binding),
                "reason": r.reason,
            }
            for i, r in later
        ]
        return json.dumps(body, separators=(",", ":")).encode()

    # -- temporary limits (the operator API) ----------------------------------------------

    def set_limit(
        self,
        zone: str,
        interface_limit_w: float,
        *,
        start: datetime,
        end: datetime,
        reason: str,
        set_by: str,
    ) -> ApiLimit:
        limit_id = self.check.set_temporary_limit(
            zone, interface_limit_w, start=start, end=end, reason=reason
        )
        limit = ApiLimit(limit_id, zone, float(interface_limit_w), start, end, reason, set_by)
        self.api_limits[limit_id] = limit
        return limit

    def limit_row(self, limit: ApiLimit, *, set_at: datetime) -> dict[str, Any]:
        """The `temporary_limits` row that puts a limit set through the API on record (to
        commit with its audit entry: the limit is not in force unless it is on record)."""
        held = self.check.temporary_limit(limit.id)
        if held is None:
            raise GridgateError(f"temporary limit {limit.id} is not in force")
        return held.row(source="api", set_by=limit.set_by, set_at=set_at)

    def clear_limit(self, limit_id: str) -> ApiLimit | None:
        limit = self.api_limits.pop(limit_id, None)
        if limit is not None:
            self.check.clear_temporary_limit(limit_id)
            # clearing is a base-state change too (the check does not call its listeners)
            self.changed(limit.zone, None)
        return limit

    def active_limits(self, zones: Iterable[str]) -> list[dict[str, Any]]:
        """The temporary limits of `zones` not over yet: the config's, then the API's."""
        now = self._clock()
        wanted = set(zones)
        out: list[dict[str, Any]] = []
        for zone_id in sorted(wanted):
            zone = self.zones.get(zone_id)
            for t in zone.temporary_limits if zone else []:
                if t.end > now:
                    out.append(
                        {
                            "id": None,
                            "zone": zone_id,
                            "interface_limit_w": float(t.interface_limit_w),
                            "start": t.start.isoformat(),
                            "end": t.end.isoformat(),
                            "reason": t.reason,
                            "set_by": "config",
                            "source": "config",
                        }
                    )
        out += [
            limit.as_json()
            for limit in sorted(self.api_limits.values(), key=lambda t: (t.zone, t.start))
            if limit.zone in wanted and limit.end > now
        ]
        return out
