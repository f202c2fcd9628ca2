"""Who is who, who owns what, and who receives what: the participant directory."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from gateway.config import (
    CongestionPointSettings,
    ParticipantSettings,
    ResourceSettings,
    Settings,
    decode_ed25519_public_key,
)
from gateway.model import RESPONSE_TYPES, MessageKind, Role

# The endpoint of a participant found by DNS is `dns:<uftp_domain>`: the channel's deliverer
# looks the URL up at each attempt (adapters/uftp/discovery.py), so a lookup that fails is
# retried by the outbox and a moved endpoint is followed, rather than decided at routing.
DISCOVERED_ENDPOINT = "dns:"


@dataclass(frozen=True, slots=True)
class Participant:
    id: str
    role: Role
    uftp_domain: str | None
    endpoint: str | None
    # empty for a participant found by DNS: its keys are looked up (adapters/uftp/discovery)
    public_keys: tuple[bytes, ...]
    mqtt_prefix: str | None
    congestion_points: tuple[CongestionPointSettings, ...]
    resources: tuple[ResourceSettings, ...]
    # where its keys and endpoint come from: the operator config, or DNS for its uftp_domain
    discovery: Literal["config", "dns"] = "config"
    # IEC CIM: where gridgate posts the CIM documents it sends this participant
    cim_endpoint: str | None = None

    @classmethod
    def from_settings(cls, p: ParticipantSettings) -> Participant:
        found_by_dns = p.discovery == "dns"
        return cls(
            id=p.id,
            role=p.role_enum,
            uftp_domain=p.uftp_domain,
            endpoint=f"{DISCOVERED_ENDPOINT}{p.uftp_domain}" if found_by_dns else p.endpoint,
            public_keys=tuple(decode_ed25519_public_key(k) for k in p.public_keys),
            mqtt_prefix=p.mqtt_prefix,
            congestion_points=tuple(p.congestion_points),
            resources=tuple(p.resources),
            discovery=p.discovery,
            cim_endpoint=p.cim_endpoint,
        )

    @property
    def found_by_dns(self) -> bool:
        return self.discovery == "dns"


# Which role sends which message type, and to which role (UFTP 3 use cases; NOTES §1)
_DIRECTIONS: dict[MessageKind, tuple[Role, Role]] = {
    MessageKind.FLEX_REQUEST: (Role.DSO, Role.AGR),
    MessageKind.FLEX_OFFER: (Role.AGR, Role.DSO),
    MessageKind.FLEX_OFFER_REVOCATION: (Role.AGR, Role.DSO),
    MessageKind.FLEX_ORDER: (Role.DSO, Role.AGR),
    MessageKind.FLEX_RESERVATION_UPDATE: (Role.DSO, Role.AGR),
    MessageKind.D_PROGNOSIS: (Role.AGR, Role.DSO),
    MessageKind.FLEX_SETTLEMENT: (Role.DSO, Role.AGR),
    MessageKind.METERING: (Role.AGR, Role.DSO),
    MessageKind.DSO_PORTFOLIO_UPDATE: (Role.DSO, Role.CRO),
    MessageKind.DSO_PORTFOLIO_QUERY: (Role.DSO, Role.CRO),
    MessageKind.AGR_PORTFOLIO_UPDATE: (Role.AGR, Role.CRO),
    MessageKind.AGR_PORTFOLIO_QUERY: (Role.AGR, Role.CRO),
}
for _cls in RESPONSE_TYPES.values():  # a response goes back the way its request came
    _sender, _recipient = _DIRECTIONS[_cls.answers]
    _DIRECTIONS[_cls.kind] = (_recipient, _sender)

# the messages a common reference operator (CRO) receives
CRO_KINDS = frozenset(kind for kind, (_, recipient) in _DIRECTIONS.items() if recipient is Role.CRO)

USEF_ROLES = frozenset({Role.DSO, Role.AGR, Role.CRO})

# Which roles may send which message type (JAVA UftpRoleInformation); TestMessage: any
SENDER_ROLES: dict[MessageKind, frozenset[Role]] = {
    kind: frozenset({sender}) for kind, (sender, _) in _DIRECTIONS.items()
} | {MessageKind.TEST_MESSAGE: USEF_ROLES, MessageKind.TEST_MESSAGE_RESPONSE: USEF_ROLES}

# ...and which roles may receive it
RECIPIENT_ROLES: dict[MessageKind, frozenset[Role]] = {
    kind: frozenset({recipient}) for kind, (_, recipient) in _DIRECTIONS.items()
} | {MessageKind.TEST_MESSAGE: USEF_ROLES, MessageKind.TEST_MESSAGE_RESPONSE: USEF_ROLES}


@dataclass
class Directory:
    """The participant directory, built once from the operator config.

    It is who may do what; for a participant found by DNS, its keys and endpoint are looked
    up separately (adapters/uftp/discovery.py) and never change who it is or what it owns.
    """

    participants: dict[str, Participant] = field(default_factory=dict)
    by_domain: dict[str, Participant] = field(default_factory=dict)
    owner_of: dict[str, Participant] = field(default_factory=dict)
    congestion_points: dict[str, CongestionPointSettings] = field(default_factory=dict)
    # (aggregator id, congestion point) -> its registered resources there
    resources_at: dict[tuple[str, str], tuple[ResourceSettings, ...]] = field(default_factory=dict)
    # IEC CIM: (codingScheme, code) -> participant; client certificate SHA-256 -> participant;
    # registeredResource.mRID -> (its aggregator, the resource)
    by_party: dict[tuple[str, str], Participant] = field(default_factory=dict)
    # IEC CIM area (connecting_Domain.mRID) -> the congestion point it stands for
    by_cim_domain: dict[str, str] = field(default_factory=dict)
    by_certificate: dict[str, Participant] = field(default_factory=dict)
    by_cim_resource: dict[str, tuple[Participant, ResourceSettings]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Directory:
        directory = cls()
        grouped: dict[tuple[str, str], list[ResourceSettings]] = defaultdict(list)
        for p in settings.participants:
            participant = Participant.from_settings(p)
            directory.participants[p.id] = participant
            if p.uftp_domain:
                directory.by_domain[p.uftp_domain] = participant
            for cp in p.congestion_points:
                directory.owner_of[cp.ean] = participant
                directory.congestion_points[cp.ean] = cp
                if cp.cim_domain is not None:
                    directory.by_cim_domain[cp.cim_domain] = cp.ean
            for r in p.resources:
                grouped[(p.id, r.congestion_point)].append(r)
                if r.cim_id is not None:
                    directory.by_cim_resource[r.cim_id] = (participant, r)
            for party in p.cim_parties:
                directory.by_party[(party.coding_scheme, party.code)] = participant
            if p.client_certificate_sha256 is not None:
                directory.by_certificate[p.client_certificate_sha256] = participant
        directory.resources_at = {key: tuple(rs) for key, rs in grouped.items()}
        return directory

    def resources(
        self, aggregator: Participant, congestion_point: str
    ) -> tuple[ResourceSettings, ...]:
        return self.resources_at.get((aggregator.id, congestion_point), ())
