"""The grid operators' API over HTTPS: traffic lights, temporary limits, findings.

Every request is authenticated by its TLS client certificate: its SHA-256 fingerprint is the
`client_certificate_sha256` of one participant (as on the CIM endpoint), else 401. What a
caller may see and do follows its role and what it owns:

    GET    /grid/v1/traffic-lights?period=YYYY-MM-DD&isp=N   DSO: its congestion points;
           AGR: those of its resources; ISO: all. Default: today, the current ISP.
    GET    /grid/v1/temporary-limits                           DSO: its zones; ISO: all
    POST   /grid/v1/temporary-limits                           the zone's DSO only
    DELETE /grid/v1/temporary-limits/{id}                      the DSO that owns the zone
    GET    /grid/v1/revalidation                               DSO: its zones; ISO: all

Temporary limits are the DSO's: SO GL (Regulation (EU) 2017/1485) Art. 182(4) gives the
reserve connecting DSO the right, in cooperation with the TSO, to set temporary limits to
the delivery of active power reserves in its grid. The ISO sees them (the cooperation), but
does not set them here: it asks the DSO, whose limit then binds the ISO's own activations.
A limit is set and cleared in one transaction with its audit entry (the `temporary_limits`
table): a restart puts every limit not cleared back in force, under the same id.

Errors are JSON `{"error": <what>, "rule": <the rule broken>}`.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.audit.chain import AuditDraft
from gateway.model import Role
from gateway.store.writer import Unit
from gateway.tls import client_fingerprint

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.gridcheck.service import GridService
    from gateway.routing import Participant

log = logging.getLogger(__name__)

PREFIX = "/grid/v1"


class ApiRule(enum.StrEnum):
    """The rules the operator API holds a request to; each error names one."""

    CLIENT_CERTIFICATE = "operator API: a request carries a TLS client certificate gridgate knows"
    NOT_POWERFLOW = 'gridcheck.method: the grid check is not a power flow ("powerflow")'
    ROLE = "operator API: the caller's role may not do this"
    OWNER = "operator API: only the zone's DSO acts on its zone"
    ART_182 = "SO GL Art. 182(4): the reserve connecting DSO sets temporary limits in its grid"
    BAD_JSON = "operator API: the body is one JSON object"
    FIELDS = "operator API: the fields are zone, interface_limit_w, start, end and reason"
    UNKNOWN_ZONE = "gridcheck.zones: the zone is configured"
    LIMIT_VALUE = "operator API: interface_limit_w is a positive number of watts"
    TIME = "operator API: start and end are ISO 8601 times with a UTC offset"
    WINDOW = "operator API: a temporary limit ends after it starts, and not in the past"
    UNKNOWN_LIMIT = "operator API: the temporary limit was set through this API and is active"
    PERIOD = "operator API: period is a date YYYY-MM-DD"
    ISP = "operator API: isp is an ISP of the period (1-based)"
    STORE = "operator API: gridgate records the change before it answers"


class ApiError(Exception):
    """A request the API refuses: its HTTP status, what was wrong, and the rule."""

    def __init__(self, status: int, rule: ApiRule, error: str) -> None:
        super().__init__(error)
        self.status, self.rule, self.error = status, rule, error

    def response(self) -> web.Response:
        return web.json_response({"error": self.error, "rule": self.rule.value}, status=self.status)


class OperatorApi:
    """The handlers; each authenticates, authorizes, then answers."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.directory = gateway.directory
        self.service: GridService | None = gateway.grid_service

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"{PREFIX}/traffic-lights", self._guard(self.traffic_lights)),
            web.get(f"{PREFIX}/temporary-limits", self._guard(self.list_limits)),
            web.post(f"{PREFIX}/temporary-limits", self._guard(self.set_limit)),
            web.delete(f"{PREFIX}/temporary-limits/{{limit_id}}", self._guard(self.clear_limit)),
            web.get(f"{PREFIX}/revalidation", self._guard(self.revalidation)),
        ]

    def _guard(self, handler: Any) -> Any:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                caller = self._caller(request)
                if self.service is None:
                    raise ApiError(
                        404,
                        ApiRule.NOT_POWERFLOW,
                        f"the grid check is {self.gateway.settings.gridcheck.method!r}: "
                        "traffic lights, temporary limits and re-validation need a grid model",
                    )
                result: web.StreamResponse = await handler(request, caller, self.service)
                return result
            except ApiError as e:
                return e.response()
            except Exception:
                log.exception("operator API: %s %s failed", request.method, request.path)
                return web.json_response(
                    {"error": "gridgate could not answer", "rule": ApiRule.STORE.value},
                    status=500,
                )

        return guarded

    def _caller(self, request: web.Request) -> Participant:
        fingerprint = client_fingerprint(request)
        if fingerprint is None:
            raise ApiError(401, ApiRule.CLIENT_CERTIFICATE, "no TLS client certificate")
        caller = self.directory.by_certificate.get(fingerprint)
        if caller is None:
            raise ApiError(
                401,
                ApiRule.CLIENT_CERTIFICATE,
                f"no participant has the client certificate {fingerprint}",
            )
        return caller

    # -- who sees what ----------------------------------------------------------------------

    def _visible_cps(self, caller: Participant, service: GridService) -> list[str]:
        every = [cp for cps in service.zone_cps.values() for cp in cps]
        if caller.role is Role.ISO:
            return every
        if caller.role is Role.DSO:
            return [cp for cp in every if self._owner(cp) == caller.id]
        if caller.role is Role.AGR:
            return [cp for cp in every if self.directory.resources(caller, cp)]
        raise ApiError(403, ApiRule.ROLE, f"{caller.id} is a {caller.role.value}: no lights")

    def _owner(self, cp: str) -> str | None:
        owner = self.directory.owner_of.get(cp)
        return owner.id if owner else None

    def _zones_of(self, caller: Participant, service: GridService, what: str) -> list[str]:
        if caller.role is Role.ISO:
            return sorted(service.zones)
        if caller.role is Role.DSO:
            return sorted(z for z, s in service.zones.items() if s.dso == caller.id)
        raise ApiError(
            403, ApiRule.ROLE, f"{caller.id} is a {caller.role.value}: {what} are the DSO's"
        )

    # -- handlers -------------------------------------------------------------------------

    async def traffic_lights(
        self, request: web.Request, caller: Participant, service: GridService
    ) -> web.Response:
        today, current = service.current_isp()
        text = request.query.get("period")
        try:
            period = date.fromisoformat(text) if text is not None else today
        except ValueError as e:
            raise ApiError(400, ApiRule.PERIOD, f"period {text!r} is not a date") from e
        count = service.isp_count(period)
        text = request.query.get("isp")
        if text is None:
            if period != today:
                raise ApiError(400, ApiRule.ISP, f"period {period} is not today: give its isp")
            isp = current
        elif not text.isdigit() or not 1 <= int(text) <= count:
            raise ApiError(400, ApiRule.ISP, f"isp {text!r} is not one of 1..{count}")
        else:
            isp = int(text)
        lights = [
            service.light_json(cp, period, isp, service.check.traffic_light(cp, period, isp))
            for cp in self._visible_cps(caller, service)
        ]
        return web.json_response({"period": period.isoformat(), "isp": isp, "lights": lights})

    async def list_limits(
        self, _: web.Request, caller: Participant, service: GridService
    ) -> web.Response:
        zones = self._zones_of(caller, service, "temporary limits")
        return web.json_response({"temporary_limits": service.active_limits(zones)})

    async def set_limit(
        self, request: web.Request, caller: Participant, service: GridService
    ) -> web.Response:
        if caller.role is not Role.DSO:
            raise ApiError(
                403, ApiRule.ART_182, f"{caller.id} is a {caller.role.value}, not the zone's DSO"
            )
        body = await _json_object(request)
        unknown = sorted(set(body) - {"zone", "interface_limit_w", "start", "end", "reason"})
        missing = sorted({"zone", "interface_limit_w", "start", "end"} - set(body))
        if unknown or missing:
            what = "; ".join(
                part
                for part in (
                    f"unknown: {', '.join(unknown)}" if unknown else "",
                    f"missing: {', '.join(missing)}" if missing else "",
                )
                if part
            )
            raise ApiError(400, ApiRule.FIELDS, what)
        zone = body["zone"]
        if not isinstance(zone, str) or zone not in service.zones:
            raise ApiError(404, ApiRule.UNKNOWN_ZONE, f"unknown zone {zone!r}")
        if service.zones[zone].dso != caller.id:
            raise ApiError(403, ApiRule.OWNER, f"zone {zone!r} is not {caller.id}'s grid")
        limit_w = body["interface_limit_w"]
        if (
            isinstance(limit_w, bool)
            or not isinstance(limit_w, int | float)
            or not math.isfinite(limit_w)
            or limit_w <= 0
        ):
            raise ApiError(400, ApiRule.LIMIT_VALUE, f"interface_limit_w {limit_w!r}")
        start, end = _aware(body["start"], "start"), _aware(body["end"], "end")
        if end <= start:
            raise ApiError(400, ApiRule.WINDOW, f"end {end.isoformat()} is not after start")
        now = self.gateway.clock()
        if end <= now:
            raise ApiError(400, ApiRule.WINDOW, f"end {end.isoformat()} is in the past")
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise ApiError(400, ApiRule.FIELDS, "reason is a string")
        limit = service.set_limit(
            zone, float(limit_w), start=start, end=end, reason=reason, set_by=caller.id
        )
        try:
            now = self.gateway.clock()
            await self._record(
                "gridcheck.temporary_limit.set",
                caller,
                limit.as_json(),
                Unit(temporary_limits=[service.limit_row(limit, set_at=now)]),
                now,
            )
        except Exception as e:
            service.clear_limit(limit.id)  # not in force unless it is on record
            log.exception("operator API: temporary limit %s could not be recorded", limit.id)
            raise ApiError(503, ApiRule.STORE, "the limit could not be recorded: retry") from e
        return web.json_response(limit.as_json(), status=201)

    async def clear_limit(
        self, request: web.Request, caller: Participant, service: GridService
    ) -> web.Response:
        if caller.role is not Role.DSO:
            raise ApiError(
                403, ApiRule.ART_182, f"{caller.id} is a {caller.role.value}, not the zone's DSO"
            )
        limit_id = request.match_info["limit_id"]
        limit = service.api_limits.get(limit_id)
        if limit is None:
            raise ApiError(404, ApiRule.UNKNOWN_LIMIT, f"no temporary limit {limit_id!r}")
        if service.zones[limit.zone].dso != caller.id:
            raise ApiError(403, ApiRule.OWNER, f"zone {limit.zone!r} is not {caller.id}'s grid")
        now = self.gateway.clock()
        try:
            await self._record(
                "gridcheck.temporary_limit.cleared",
                caller,
                limit.as_json(),
                Unit(cleared_limits=[(limit_id, now)]),
                now,
            )
        except Exception as e:  # it stays in force: a limit is cleared once that is on record
            log.exception(
                "operator API: clearing temporary limit %s could not be recorded", limit_id
            )
            raise ApiError(
                503, ApiRule.STORE, "the clearing could not be recorded, the limit holds: retry"
            ) from e
        service.clear_limit(limit_id)
        return web.json_response({"cleared": limit_id})

    async def revalidation(
        self, _: web.Request, caller: Participant, service: GridService
    ) -> web.Response:
        zones = self._zones_of(caller, service, "re-validation findings")
        found = [service.latest[z].as_json() for z in zones if z in service.latest]
        return web.json_response({"revalidations": found})

    async def _record(
        self,
        event: str,
        caller: Participant,
        detail: dict[str, Any],
        unit: Unit,
        now: datetime,
    ) -> None:
        """Commit `unit` (the change) with the audit entry `event` that records it."""
        unit.audit.append(
            AuditDraft(
                event=event, actor=caller.id, detail={**detail, "role": caller.role.value}, ts=now
            )
        )
        await self.gateway.writer.submit(unit)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, ApiRule.BAD_JSON, f"not JSON: {e}") from e
    if not isinstance(body, dict):
        raise ApiError(400, ApiRule.BAD_JSON, f"a JSON {type(body).__name__}, not an object")
    return body


def _aware(value: object, key: str) -> datetime:
    if not isinstance(value, str):
        raise ApiError(400, ApiRule.TIME, f"{key} {value!r} is not a string")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as e:
        raise ApiError(400, ApiRule.TIME, f"{key} {value!r} is not ISO 8601") from e
    if when.tzinfo is None:
        raise ApiError(400, ApiRule.TIME, f"{key} {value!r} has no UTC offset")
    return when


def routes(gateway: Gateway) -> list[web.RouteDef]:
    """The operator API's routes (answering 404 with the rule under the capacity method)."""
    return OperatorApi(gateway).routes()
