"""Operator config files (TOML) -> typed, validated settings.

Every error names the file, the key path and what was expected, e.g.
`config/demo.toml: participants[2].resources[0].max_w: Input should be a valid integer (got 'x')`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.errors import ConfigError
from gateway.model import Role

DOMAIN_RE = r"^([a-z0-9]+(-[a-z0-9]+)*\.)+[a-z]{2,}$"
ENTITY_ADDRESS_RE = r"^(ea1\.[0-9]{4}-[0-9]{2}\..{1,244}:.{1,244}|ean\.[0-9]{12,34})$"
ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MQTT_PREFIX_RE = r"^[^#+/]+(/[^#+/]+)*$"

Domain = Annotated[str, Field(pattern=DOMAIN_RE)]
EntityAddress = Annotated[str, Field(pattern=ENTITY_ADDRESS_RE)]
Ident = Annotated[str, Field(pattern=ID_RE)]


class Strict(BaseModel):
    """Unknown keys are errors; values are not coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def parse_iso_duration(text: str) -> timedelta:
    """Parse the small xs:duration subset markets use: PT15M, PT1H, PT30S, PT1H30M."""
    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", text.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"expected an ISO 8601 time duration such as PT15M, got {text!r}")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def decode_ed25519_public_key(text: str) -> bytes:
    """Return the 32 raw bytes of a base64 Ed25519 public key (bare, or UFTP `cs1.` form)."""
    raw_text = text.removeprefix("cs1.")
    try:
        raw = base64.b64decode(raw_text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("expected a base64 Ed25519 public key") from e
    if len(raw) == 64 and text.startswith("cs1."):
        raw = raw[:32]  # cs1. carries the signing key followed by the box key
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes of Ed25519 public key, got {len(raw)}")
    return raw


class PartyCode(Strict):
    """A market participant code in IEC CIM documents: codingScheme A01 (EIC), A10 (GS1),
    or a national scheme (NNO, NSE, …), and the code itself."""

    coding_scheme: str = Field(pattern=r"^[A-Z0-9]{1,16}$")
    code: str = Field(min_length=1, max_length=60)


class TlsSettings(Strict):
    certificate: Path
    key: Path
    # when set, clients must present a certificate issued by this CA (mutual TLS)
    client_ca: Path | None = None
    # false: a client certificate is checked when presented, but not every client must
    # present one (the CIM endpoint still requires it; UFTP peers authenticate by signature)
    require_client_certificate: bool = True


def _is_loopback_host(host: str) -> bool:
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def https_url(value: str) -> str:
    """Accept an https URL, or plain http to a loopback host (a test set-up); refuse the rest."""
    parts = urlsplit(value)
    if not parts.hostname or parts.scheme not in ("https", "http"):
        raise ValueError(f"expected an https URL, got {value!r}")
    if parts.scheme == "http" and not _is_loopback_host(parts.hostname):
        raise ValueError(f"expected https (plain http only to loopback), got {value!r}")
    return value


JwsAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]
DEFAULT_JWS: tuple[JwsAlgorithm, ...] = ("RS256", "ES256")


class InboundOAuthSettings(Strict):
    """Peers must present an OAuth 2.0 bearer token (RFC 6750): a JWT access token (RFC 9068)
    the operator's authorization server signed, checked against its published keys."""

    # the authorization server's `iss`, and its JWK Set (RFC 7517) with the signing keys
    issuer: str = Field(min_length=1)
    jwks_url: str
    # the `aud` tokens for gridgate carry
    audience: str = Field(min_length=1)
    # when set, the token's `scope` (or `scp`) must include this scope
    scope: str | None = None
    # the JWS algorithms accepted: asymmetric only, never `none` or a shared-secret HMAC
    algorithms: list[JwsAlgorithm] = Field(default_factory=lambda: [*DEFAULT_JWS], min_length=1)

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, value: str) -> str:
        return https_url(value)


class GatewaySettings(Strict):
    listen: str = "127.0.0.1:8080"
    database_url: str = "sqlite+aiosqlite:///gridgate.db"
    uftp_domain: Domain
    # the libsodium 64-byte secret key (or 32-byte seed) in base64, in a file of its own
    signing_key_file: Path
    tls: TlsSettings | None = None
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    # requests per second per client address before HTTP 429
    rate_limit_per_second: float = Field(default=5000.0, gt=0)
    # messages waiting for their commit or their delivery before HTTP 429 (back-pressure)
    max_pending: int = Field(default=2000, gt=0)
    # gridgate is the common reference operator (CRO) for its own domain: it answers
    # DSOPortfolioUpdate/Query and AGRPortfolioUpdate/Query addressed to it from what the
    # DSOs and aggregators registered
    cro: bool = False
    # IEC CIM: the code gridgate is known by in market documents (their receiver), and the
    # currency of the FlexOrders it sends for CIM activations (their price is the ISO's)
    cim_party: PartyCode | None = None
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    # when set, every UFTP POST must carry a valid bearer token (HTTP 401 otherwise)
    oauth: InboundOAuthSettings | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free
            raise ValueError("expected host:port, e.g. 127.0.0.1:8080")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class MqttSettings(Strict):
    # "embedded" runs an in-process MQTT 3.1.1 broker (demo and development only)
    url: str = "embedded"
    client_id: str = "gridgate"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value != "embedded" and not re.match(r"^mqtts?://", value):
            raise ValueError('expected "embedded" or a URL mqtt://host:port / mqtts://host:port')
        return value


class MarketSettings(Strict):
    isp_duration: str = "PT15M"
    time_zone: str = "Europe/Amsterdam"

    @field_validator("isp_duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_iso_duration(value)
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"expected an IANA time zone name, got {value!r}") from e
        return value

    @property
    def isp(self) -> timedelta:
        return parse_iso_duration(self.isp_duration)


class OutboxSettings(Strict):
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    # how long a message gridgate originates stays deliverable when it carries no expiry
    # (and is retried for: the UFTP transport appendix asks for at least an hour of back-off)
    default_validity_hours: float = Field(default=24.0, ge=1.0)
    batch_size: int = Field(default=200, gt=0)
    # a claimed row is someone's for this long; after a crash its rows come back after it.
    # It must outlast one delivery attempt (the HTTP timeout is 30 s).
    claim_lease_seconds: float = Field(default=60.0, gt=0)
    concurrency: int = Field(default=64, gt=0)


class CongestionPointSettings(Strict):
    ean: EntityAddress
    # the first-cut grid check: |sum of accepted order power| per ISP stays within this (W)
    limit_w: int = Field(gt=0)
    name: str = ""
    # whether aggregators may offer several mutually exclusive options in one FlexOffer
    # (UFTP MutexOffersSupported, as the DSO registers it with the CRO)
    mutex_offers_supported: bool = True
    # IEC CIM: the area (connecting_Domain.mRID, an EIC) a need for this congestion point
    # names, when it names no resource
    cim_domain: str | None = Field(default=None, min_length=1, max_length=60)
    # the power-flow grid check: the grid zone (gridcheck.zones[].id) it lies in, and the
    # model node its flexibility sits at when its resources name none
    zone: str | None = Field(default=None, min_length=1)
    grid_node: str | None = Field(default=None, min_length=1)


class ResourceSettings(Strict):
    id: Ident
    connection_ean: str = Field(pattern=r"^(ean\.)?[0-9]{12,34}$")
    congestion_point: EntityAddress
    min_w: int
    max_w: int
    # its registeredResource.mRID in IEC CIM market documents (the ISO's resource code)
    cim_id: str | None = Field(default=None, min_length=1, max_length=60)
    # the grid model node it is connected at (else its congestion point's grid_node)
    grid_node: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.min_w > self.max_w:
            raise ValueError(f"min_w ({self.min_w}) must not exceed max_w ({self.max_w})")
        return self


class OAuthClientSettings(Strict):
    """The OAuth 2.0 client credentials grant (RFC 6749 §4.4) gridgate uses to send to a
    participant: each POST carries the access token as `Authorization: Bearer` (RFC 6750)."""

    token_url: str
    client_id: str = Field(min_length=1)
    # the client secret, alone in a file of its own (like the signing key)
    client_secret_file: Path
    # the scopes to ask for, space-separated; the authorization server's default when absent
    scope: str | None = None
    # how gridgate authenticates to the token endpoint (RFC 6749 §2.3.1): HTTP Basic, which
    # every authorization server supports, or in the form body as shapeshifter-uftp does
    client_auth: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        return https_url(value)


class ParticipantSettings(Strict):
    id: Ident
    role: Literal["ISO", "DSO", "AGR", "CRO"]
    uftp_domain: Domain | None = None
    endpoint: str | None = None
    # Ed25519 public keys in base64; two at once during a key rotation
    public_keys: list[str] = Field(default_factory=list, max_length=2)
    # "dns": public_keys and endpoint are looked up under _usef.<uftp_domain> (UFTP transport
    # appendix, service discovery); what it may do and owns stays in this config
    discovery: Literal["config", "dns"] = "config"
    mqtt_prefix: str | None = Field(default=None, pattern=MQTT_PREFIX_RE)
    congestion_points: list[CongestionPointSettings] = Field(default_factory=list)
    resources: list[ResourceSettings] = Field(default_factory=list)
    # when set, gridgate gets a bearer token for each POST to this participant's endpoint
    oauth: OAuthClientSettings | None = None
    # IEC CIM: the codes it is known by in market documents, the SHA-256 fingerprint (hex)
    # of the TLS client certificate it posts CIM documents with, and where gridgate posts
    # the CIM documents it sends it
    cim_parties: list[PartyCode] = Field(default_factory=list)
    client_certificate_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    cim_endpoint: str | None = None

    @field_validator("public_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for key in value:
            decode_ed25519_public_key(key)
        return value

    @field_validator("endpoint", "cim_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError("expected an http(s) URL")
        return value

    @model_validator(mode="after")
    def _role_fits(self) -> Self:
        if self.congestion_points and self.role != "DSO":
            raise ValueError("only a DSO owns congestion_points")
        if self.resources and self.role != "AGR":
            raise ValueError("only an AGR registers resources")
        if self.discovery == "dns":
            self._check_dns_discovery()
        elif self.uftp_domain and not self.public_keys:
            raise ValueError(
                "a participant with a uftp_domain needs public_keys to verify it "
                '(or discovery = "dns")'
            )
        return self

    def _check_dns_discovery(self) -> None:
        rule = 'discovery = "dns"'
        if not self.uftp_domain:
            raise ValueError(f"{rule} needs a uftp_domain: the records are looked up under it")
        if self.role not in ("DSO", "AGR", "CRO"):
            raise ValueError(f"{rule}: only the USEF roles DSO, AGR and CRO publish _usef records")
        if self.public_keys or self.endpoint:
            raise ValueError(
                f"{rule}: public_keys and endpoint come from DNS (TXT _{self.role}._usef."
                f"{self.uftp_domain}, CNAME _http._{self.role}._usef.{self.uftp_domain}); "
                "remove them here"
            )

    @property
    def role_enum(self) -> Role:
        return Role(self.role)


class TrafficLightSettings(Strict):
    """USEF regimes of a congestion point from the check's headroom: the least margin left to
    any limit the congestion point's power moves, as a fraction of that limit (voltages: of
    the voltage band). Red: a rated limit is exceeded, or the state cannot be checked."""

    yellow_below: float = Field(default=0.10, gt=0, le=1)
    # below this the safety margin is eaten into (0: at the enforced limit)
    orange_below: float = Field(default=0.0, ge=-1, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.orange_below >= self.yellow_below:
            raise ValueError(
                f"orange_below ({self.orange_below}) must be below yellow_below "
                f"({self.yellow_below})"
            )
        return self


class TemporaryLimitSettings(Strict):
    """A temporary TSO-DSO interface limit the DSO sets for a zone (SO GL Art. 182(4))."""

    interface_limit_w: int = Field(gt=0)
    start: datetime
    end: datetime
    reason: str = ""

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a UTC offset, e.g. 2026-11-27T16:00:00+01:00")
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


class GridZoneSettings(Strict):
    """One DSO grid the power-flow check models."""

    id: Ident
    # the DSO participant whose grid this is
    dso: Ident
    # the model files: a pandapower JSON file, or the CGMES profiles (files or one folder)
    model: list[Path] = Field(min_length=1)
    format: Literal["cgmes", "pandapower"]
    # safety margins (forecast and model error): off the thermal ratings and the interface
    # limit as a fraction, off both ends of the voltage band in pu
    thermal_margin: float = Field(default=0.02, ge=0, lt=0.5)
    voltage_margin: float = Field(default=0.002, ge=0, lt=0.1)
    v_min: float = Field(default=0.95, gt=0)
    v_max: float = Field(default=1.05, gt=0)
    # the TSO-DSO interface: |active power at the slack| stays within this (W)
    interface_limit_w: int | None = Field(default=None, gt=0)
    # fail safe: an older model or forecast is not checked against
    max_model_age_hours: float = Field(default=720.0, gt=0)
    max_forecast_age_hours: float = Field(default=36.0, gt=0)
    # the pre-agreed fallback while the model or forecast is stale or the flow does not
    # converge: |accepted power| per congestion point and ISP within this (W); absent: reject
    default_limit_w: int | None = Field(default=None, gt=0)
    traffic_light: TrafficLightSettings = TrafficLightSettings()
    # factors on the model's operating point over the local day, evenly spaced (24 values:
    # hourly; 96: per quarter-hour), for ISPs without a forecast; empty: factor 1
    load_profile: list[float] = Field(default_factory=list)
    temporary_limits: list[TemporaryLimitSettings] = Field(default_factory=list)

    @field_validator("load_profile")
    @classmethod
    def _profile(cls, value: list[float]) -> list[float]:
        if any(f < 0 for f in value):
            raise ValueError("load_profile factors must not be negative")
        return value

    @model_validator(mode="after")
    def _band(self) -> Self:
        if self.v_min + self.voltage_margin >= self.v_max - self.voltage_margin:
            raise ValueError(
                f"the voltage band v_min {self.v_min} .. v_max {self.v_max} pu leaves nothing "
                f"inside the voltage_margin {self.voltage_margin} pu"
            )
        return self


class GridServiceSettings(Strict):
    """The grid check's background service (powerflow only): traffic lights on MQTT,
    re-validation of accepted orders, expiry (gateway.gridcheck.service)."""

    # how often the check's ledger is looked at for accepted orders that turn a light (s)
    poll_seconds: float = Field(default=2.0, gt=0)
    # re-validation waits this long after a base-state change for the next one (s)
    debounce_seconds: float = Field(default=0.5, ge=0)
    # a re-validation report to the DSO's control centre stays deliverable this long (h)
    report_validity_hours: float = Field(default=1.0, gt=0)
    # how often the zones' model files are looked at: a changed file is loaded and replaces
    # the zone's model at once (s)
    model_poll_seconds: float = Field(default=30.0, gt=0)


class GridCheckSettings(Strict):
    # "capacity": |accepted power| per congestion point within its limit_w (the first cut);
    # "powerflow": AC power flow on the zones' grid models
    method: Literal["capacity", "powerflow"] = "capacity"
    zones: list[GridZoneSettings] = Field(default_factory=list)
    service: GridServiceSettings = GridServiceSettings()

    @model_validator(mode="after")
    def _zones(self) -> Self:
        seen: set[str] = set()
        for index, zone in enumerate(self.zones):
            if zone.id in seen:
                raise ValueError(f"zones[{index}].id: duplicate zone id {zone.id!r}")
            seen.add(zone.id)
        if self.method == "powerflow" and not self.zones:
            raise ValueError('method = "powerflow" needs at least one [[gridcheck.zones]]')
        return self


class Settings(Strict):
    gateway: GatewaySettings
    mqtt: MqttSettings = MqttSettings()
    market: MarketSettings = MarketSettings()
    outbox: OutboxSettings = OutboxSettings()
    participants: list[ParticipantSettings] = Field(default_factory=list)
    gridcheck: GridCheckSettings = GridCheckSettings()

    @model_validator(mode="after")
    def _topology(self) -> Self:
        seen_ids: set[str] = set()
        seen_domains: set[str] = {self.gateway.uftp_domain}
        owners: dict[str, str] = {}
        parties: dict[tuple[str, str], str] = {}
        certificates: dict[str, str] = {}
        cim_ids: dict[str, str] = {}
        for index, p in enumerate(self.participants):
            where = f"participants[{index}]"
            if p.id in seen_ids:
                raise ValueError(f"{where}.id: duplicate participant id {p.id!r}")
            seen_ids.add(p.id)
            for j, party in enumerate(p.cim_parties):
                key = (party.coding_scheme, party.code)
                if key in parties:
                    raise ValueError(
                        f"{where}.cim_parties[{j}]: {party.coding_scheme} {party.code} is "
                        f"already {parties[key]}'s"
                    )
                parties[key] = p.id
            fingerprint = p.client_certificate_sha256
            if fingerprint is not None:
                if fingerprint in certificates:
                    raise ValueError(
                        f"{where}.client_certificate_sha256: already {certificates[fingerprint]}'s"
                    )
                certificates[fingerprint] = p.id
            for j, r in enumerate(p.resources):
                if r.cim_id is not None:
                    if r.cim_id in cim_ids:
                        raise ValueError(
                            f"{where}.resources[{j}].cim_id: {r.cim_id!r} is already "
                            f"{cim_ids[r.cim_id]}'s"
                        )
                    cim_ids[r.cim_id] = f"{p.id}/{r.id}"
            if p.uftp_domain:
                if p.uftp_domain in seen_domains:
                    raise ValueError(f"{where}.uftp_domain: {p.uftp_domain!r} is used twice")
                seen_domains.add(p.uftp_domain)
            for j, cp in enumerate(p.congestion_points):
                if cp.ean in owners:
                    raise ValueError(
                        f"{where}.congestion_points[{j}].ean: {cp.ean} is already owned by "
                        f"{owners[cp.ean]}"
                    )
                owners[cp.ean] = p.id
        for index, p in enumerate(self.participants):
            resource_ids: set[str] = set()
            for j, r in enumerate(p.resources):
                where = f"participants[{index}].resources[{j}]"
                if r.id in resource_ids:
                    raise ValueError(f"{where}.id: duplicate resource id {r.id!r}")
                resource_ids.add(r.id)
                if r.congestion_point not in owners:
                    raise ValueError(
                        f"{where}.congestion_point: {r.congestion_point} is not owned by any DSO"
                    )
        self._check_grid_zones()
        return self

    def _check_grid_zones(self) -> None:
        """Zones belong to a DSO; its congestion points name known zones and their nodes."""
        roles = {p.id: p.role for p in self.participants}
        zones = {z.id: z for z in self.gridcheck.zones}
        for index, zone in enumerate(self.gridcheck.zones):
            where = f"gridcheck.zones[{index}].dso"
            if zone.dso not in roles:
                raise ValueError(f"{where}: {zone.dso!r} is no participant")
            if roles[zone.dso] != "DSO":
                raise ValueError(f"{where}: {zone.dso!r} is a {roles[zone.dso]}, not a DSO")
        resources: dict[str, list[ResourceSettings]] = {}
        for p in self.participants:
            for r in p.resources:
                resources.setdefault(r.congestion_point, []).append(r)
        powerflow = self.gridcheck.method == "powerflow"
        for index, p in enumerate(self.participants):
            for j, cp in enumerate(p.congestion_points):
                where = f"participants[{index}].congestion_points[{j}]"
                if cp.zone is None:
                    continue
                if cp.zone not in zones:
                    known = ", ".join(sorted(zones)) or "none"
                    raise ValueError(
                        f"{where}.zone: unknown zone {cp.zone!r} (gridcheck.zones: {known})"
                    )
                zone = zones[cp.zone]
                if zone.dso != p.id:
                    raise ValueError(
                        f"{where}.zone: zone {zone.id!r} is {zone.dso}'s grid, not {p.id}'s"
                    )
                if powerflow and cp.grid_node is None:
                    here = resources.get(cp.ean, [])
                    unplaced = [r.id for r in here if r.grid_node is None]
                    if not here or unplaced:
                        which = f" (resources without one: {', '.join(unplaced)})" if here else ""
                        raise ValueError(
                            f"{where}.grid_node: congestion point {cp.ean} in zone {zone.id!r} "
                            f"has no grid node: set grid_node here or on each of its "
                            f"resources{which}"
                        )


def _format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def format_errors(path: Path, error: ValidationError) -> list[str]:
    """Return one line per problem: file, key path, what was expected, what was found."""
    lines = []
    for item in error.errors():
        key = _format_location(tuple(item["loc"]))
        message = str(item["msg"]).removeprefix("Value error, ")
        found = item.get("input")
        shown = "" if isinstance(found, dict | list) or found is None else f" (got {found!r})"
        lines.append(f"{path}: {key or '<top level>'}: {message}{shown}")
    return lines


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such config file") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e


def load_settings(path: str | Path) -> Settings:
    """Read and validate an operator config; raise ConfigError naming file, key and rule."""
    path = Path(path)
    return settings_from_dict(read_toml(path), path=path, base=path.parent)


def settings_from_dict(data: dict[str, Any], *, path: Path, base: Path) -> Settings:
    """Validate config data; file paths in it are relative to `base`."""
    _resolve_paths(data, base)
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError("\n".join(format_errors(path, e))) from e


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make file paths in the config relative to the config file's folder."""
    participants = data.get("participants")
    for participant in participants if isinstance(participants, list) else []:
        oauth = participant.get("oauth") if isinstance(participant, dict) else None
        if isinstance(oauth, dict) and isinstance(oauth.get("client_secret_file"), str):
            oauth["client_secret_file"] = base / oauth["client_secret_file"]
    gridcheck = data.get("gridcheck")
    zones = gridcheck.get("zones") if isinstance(gridcheck, dict) else None
    for zone in zones if isinstance(zones, list) else []:
        model = zone.get("model") if isinstance(zone, dict) else None
        if isinstance(model, str):  # one file (or a CGMES folder)
            zone["model"] = [base / model]
        elif isinstance(model, list):
            zone["model"] = [base / m if isinstance(m, str) else m for m in model]
    gateway = data.get("gateway")
    if not isinstance(gateway, dict):
        return
    keys: list[tuple[dict[str, Any], str]] = [(gateway, "signing_key_file")]
    tls = gateway.get("tls")
    if isinstance(tls, dict):
        keys += [(tls, "certificate"), (tls, "key"), (tls, "client_ca")]
    for table, key in keys:
        value = table.get(key)
        if isinstance(value, str):
            table[key] = base / value
    url = gateway.get("database_url")
    # a relative SQLite file is relative to the config file too
    if (
        isinstance(url, str)
        and url.startswith("sqlite+aiosqlite:///")
        and not url.startswith("sqlite+aiosqlite:////")
    ):
        relative = url.removeprefix("sqlite+aiosqlite:///")
        if relative and relative != ":memory:":
            gateway["database_url"] = f"sqlite+aiosqlite:///{(base / relative).resolve()}"
