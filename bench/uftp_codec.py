"""Micro-benchmark of the UFTP path per message type, next to the floor measured in the same run.

    python bench/uftp_codec.py                     # all 26 types; defaults: 96 ISPs, 41 rounds
    python bench/uftp_codec.py --rounds 21         # the form docs/BENCHMARKS.md records
    python bench/uftp_codec.py --type FlexOrder    # one type (repeat --type for several)
    python bench/uftp_codec.py --rounds 101 --batch 400 --isps 96

Each type is timed on one realistic signed message: the examples of
tests/adapters/uftp/examples.py (every optional field filled), scaled to a day of `--isps`
ISPs (96 quarter hours) where the type has ISPs per Period: FlexRequest, FlexOrder,
FlexReservationUpdate and D-Prognosis carry 96 ISPs, FlexOffer two options of 96,
FlexSettlement four settled orders and one contract Period of 96 ISPs each, Metering two
profiles of 96 ISPs; D-PrognosisResponse and FlexSettlementResponse answer four orders. The
portfolio messages and the plain responses are the examples as written. Every message is
decoded and compared with its model before it is timed.

What is timed, per type (each the median over `--rounds` rounds of `--batch` calls, in µs per
message; the four are measured round by round in turn, so load that comes and goes on the
machine touches them alike):

* open    `UftpCodec.open`: SignedMessage envelope checked, Body base64-decoded, the CS1
          (Ed25519) signature verified with the sender's key;
* decode  `UftpCodec.decode`: the inner XML parsed (hardened), validated against gridgate's
          XSD and mapped to the model message;
* path    open + decode, the issue-3 figure: verify + parse + validate + map per message;
* floor   what no implementation can skip, on the same bytes: Ed25519 verify of the inner
          XML, a plain `lxml.etree.fromstring` of it and one validation against the schema
          the codec validates with, `codec.schema()` (adapters/uftp/schema/gridgate-uftp.xsd,
          gridgate's own XSD, not the official UFTP XSDs), nothing else.

For the FlexOrder (or the one `--type` asked for), the floor's three parts apart, and the
outbound figures of the FlexOrderResponse gridgate answers an order with: `codec.encode`,
`signing.sign` (Ed25519) and `UftpCodec.render` (encode + sign + SignedMessage envelope).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.uftp import codec, signing  # noqa: E402
from adapters.uftp.ingress import UftpCodec  # noqa: E402
from gateway.model import (  # noqa: E402
    ContractSettlement,
    ContractSettlementIsp,
    ContractSettlementPeriod,
    Disposition,
    DPrognosis,
    DPrognosisResponse,
    Envelope,
    FlexOffer,
    FlexOrder,
    FlexOrderResponse,
    FlexOrderSettlementStatus,
    FlexOrderStatus,
    FlexRequest,
    FlexReservationUpdate,
    FlexSettlement,
    FlexSettlementResponse,
    Message,
    Metering,
    MeteringIsp,
    MeteringProfile,
    PowerIsp,
    RequestIsp,
    Result,
    Role,
    SettlementIsp,
)
from gateway.routing import Directory, Participant  # noqa: E402
from tests.adapters.uftp.examples import ALL_KINDS, every_message, uid  # noqa: E402

GRIDGATE_DOMAIN = "gridgate.bench.example"
PEAK = range(41, 49)  # the congested ISPs of the examples: 10:00-12:00
SETTLED_ORDERS = 4


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def realistic_messages(isps: int) -> dict[str, Message]:
    """Every UFTP 3 type as the codec tests write it, with a real day's worth of ISPs."""
    messages = every_message()
    day = range(1, isps + 1)
    replace = dataclasses.replace

    request = messages["FlexRequest"]
    assert isinstance(request, FlexRequest)
    messages["FlexRequest"] = replace(
        request,
        isps=tuple(
            RequestIsp(i, -250_000, -100_000, disposition="Requested")
            if i in PEAK
            else RequestIsp(i, 0, 0, disposition="Available")
            for i in day
        ),
    )
    offer = messages["FlexOffer"]
    assert isinstance(offer, FlexOffer)
    messages["FlexOffer"] = replace(
        offer,
        options=tuple(replace(o, isps=power_day(day, o.isps[0].power, 0)) for o in offer.options),
    )
    order = messages["FlexOrder"]
    assert isinstance(order, FlexOrder)
    messages["FlexOrder"] = replace(order, isps=power_day(day, order.isps[0].power, 0))
    reservation = messages["FlexReservationUpdate"]
    assert isinstance(reservation, FlexReservationUpdate)
    messages["FlexReservationUpdate"] = replace(reservation, isps=power_day(day, 50_000, 200_000))
    prognosis = messages["D-Prognosis"]
    assert isinstance(prognosis, DPrognosis)
    messages["D-Prognosis"] = replace(
        prognosis,
        isps=tuple(PowerIsp(i, -150_000 if i in PEAK else 1_000 * i - 48_000) for i in day),
    )
    order_ids = [uid(f"FlexOrder-{n}") for n in range(1, SETTLED_ORDERS + 1)]
    prognosis_answer = messages["D-PrognosisResponse"]
    assert isinstance(prognosis_answer, DPrognosisResponse)
    messages["D-PrognosisResponse"] = replace(
        prognosis_answer,
        flex_order_statuses=tuple(
            FlexOrderStatus(flex_order_message_id=i, is_validated=n != 2)
            for n, i in enumerate(order_ids)
        ),
    )
    messages["FlexSettlement"] = settlement(messages["FlexSettlement"], day)
    settlement_answer = messages["FlexSettlementResponse"]
    assert isinstance(settlement_answer, FlexSettlementResponse)
    messages["FlexSettlementResponse"] = replace(
        settlement_answer,
        statuses=tuple(
            FlexOrderSettlementStatus(
                order_reference=f"order-2026-{42 + n:04d}",
                disposition=Disposition.DISPUTED if n == 1 else Disposition.ACCEPTED,
                dispute_reason="ISPs 45-48 were delivered in full" if n == 1 else None,
            )
            for n in range(SETTLED_ORDERS)
        ),
    )
    metering = messages["Metering"]
    assert isinstance(metering, Metering)
    power, reading = metering.profiles
    messages["Metering"] = replace(
        metering,
        profiles=(
            replace(power, isps=tuple(MeteringIsp(i, Decimal(i) / 4 - 10) for i in day)),
            MeteringProfile(
                profile_type=reading.profile_type,
                unit=reading.unit,
                isps=tuple(
                    MeteringIsp(i, Decimal("123456.789") + Decimal(i) * Decimal("0.125"))
                    for i in day
                ),
            ),
        ),
    )
    return messages


def power_day(day: range, peak: int, otherwise: int) -> tuple[PowerIsp, ...]:
    return tuple(PowerIsp(i, peak if i in PEAK else otherwise) for i in day)


def settlement(example: Message, day: range) -> FlexSettlement:
    """The month's settlement of `SETTLED_ORDERS` orders and one contract, ISP by ISP."""
    assert isinstance(example, FlexSettlement)
    first = example.order_settlements[0]
    orders = []
    for n in range(SETTLED_ORDERS):
        isps = []
        for i in day:
            ordered = -150_000 if i in PEAK else 0
            delivered = ordered + 20_000 if i >= 45 and ordered else ordered
            isps.append(
                SettlementIsp(
                    start=i,
                    baseline_power=10_000,
                    ordered_flex_power=ordered,
                    actual_power=10_000 + delivered,
                    delivered_flex_power=delivered,
                    power_deficiency=delivered - ordered,
                )
            )
        orders.append(
            dataclasses.replace(
                first,
                order_reference=f"order-2026-{42 + n:04d}",
                period=first.period - timedelta(days=n),
                isps=tuple(isps),
            )
        )
    contract = ContractSettlement(
        contract_id="contract-7",
        periods=(
            ContractSettlementPeriod(
                period=first.period,
                isps=tuple(
                    ContractSettlementIsp(
                        start=i,
                        reserved_power=200_000,
                        requested_power=150_000,
                        available_power=250_000,
                        offered_power=150_000,
                        ordered_power=150_000,
                    )
                    if i in PEAK
                    else ContractSettlementIsp(start=i, reserved_power=200_000)
                    for i in day
                ),
            ),
        ),
    )
    return dataclasses.replace(
        example, order_settlements=tuple(orders), contract_settlements=(contract,)
    )


def make_response(order: FlexOrder, reason: str | None) -> FlexOrderResponse:
    e = order.envelope
    return FlexOrderResponse(
        envelope=Envelope(
            message_id=str(uuid.uuid4()),
            conversation_id=e.conversation_id,
            sender_domain=GRIDGATE_DOMAIN,
            recipient_domain=e.sender_domain,
            sender_role=Role.AGR,
            timestamp=datetime.now(UTC),
            version=e.version,
        ),
        reference_message_id=e.message_id,
        result=Result.ACCEPTED if reason is None else Result.REJECTED,
        rejection_reason=reason,
    )


def per_call_us(
    fns: dict[str, Callable[[], object]], *, batch: int, rounds: int
) -> dict[str, float]:
    """Median over `rounds` of the mean time of `batch` calls, in µs, per function.

    The functions take turns within each round, so a neighbour's load on the machine
    falls on all of them alike and their ratios hold better than their absolute values.
    """
    for fn in fns.values():
        for _ in range(max(10, batch // 10)):  # warm caches, compiled schema, thread-locals
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in fns.items():
                start = time.perf_counter_ns()
                for _ in range(batch):
                    fn()
                samples[name].append((time.perf_counter_ns() - start) / batch / 1000)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


@dataclasses.dataclass(frozen=True)
class Signed:
    """One message as it arrives: the SignedMessage, and the floor's view of its bytes."""

    message: Message
    inner: bytes
    raw: bytes
    signature: bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--type",
        action="append",
        choices=[*ALL_KINDS, "all"],
        metavar="NAME|all",
        help="a UFTP message type (element name), repeatable; all 26 by default",
    )
    parser.add_argument("--isps", type=int, default=96, help="ISPs per Period (96)")
    parser.add_argument("--batch", type=int, default=200, help="calls per timed round (200)")
    parser.add_argument("--rounds", type=int, default=41, help="timed rounds; median (41)")
    args = parser.parse_args()
    batch, rounds = args.batch, args.rounds
    names = ALL_KINDS if args.type is None or "all" in args.type else list(dict.fromkeys(args.type))
    detail = names[0] if len(names) == 1 else "FlexOrder" if "FlexOrder" in names else names[0]

    messages = realistic_messages(args.isps)
    keys: dict[str, Ed25519PrivateKey] = {}
    participants: dict[str, Participant] = {}
    for message in messages.values():
        e = message.envelope
        if e.sender_domain not in keys:
            key = keys[e.sender_domain] = Ed25519PrivateKey.generate()
            participants[e.sender_domain] = Participant(
                id=e.sender_domain.split(".")[0],
                role=e.sender_role,
                uftp_domain=e.sender_domain,
                endpoint=None,
                public_keys=(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),),
                mqtt_prefix=None,
                congestion_points=(),
                resources=(),
            )
    directory = Directory(
        participants={p.id: p for p in participants.values()}, by_domain=participants
    )
    gridgate_key = Ed25519PrivateKey.generate()
    uftp = UftpCodec(domain=GRIDGATE_DOMAIN, signing_key=gridgate_key, max_bytes=5 << 20)
    schema = codec.schema()
    plain = etree.XMLParser(resolve_entities=False, no_network=True)

    signed: dict[str, Signed] = {}
    for name in names:
        message = messages[name]
        e = message.envelope
        inner = codec.encode(message)
        body = signing.sign(inner, keys[e.sender_domain])
        raw = codec.render_signed_message(e.sender_domain, e.sender_role, body)
        decoded = uftp.decode(uftp.open(raw, directory))
        assert decoded == message, f"{name}: the codec does not give back the message"
        if not schema.validate(etree.fromstring(inner, plain)):
            raise AssertionError(f"{name}: the floor's message is schema-invalid")
        signed[name] = Signed(message, inner, raw, body[: signing.SIGNATURE_BYTES])

    def steps(s: Signed) -> dict[str, Callable[[], object]]:
        public = keys[s.message.envelope.sender_domain].public_key()
        opened = uftp.open(s.raw, directory)

        def path() -> None:
            uftp.decode(uftp.open(s.raw, directory))

        def floor() -> None:
            public.verify(s.signature, s.inner)
            schema.validate(etree.fromstring(s.inner, plain))

        return {
            "open": lambda: uftp.open(s.raw, directory),
            "decode": lambda: uftp.decode(opened),
            "path": path,
            "floor": floor,
        }

    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}")
    print(
        f"python {platform.python_version()}, lxml {etree.__version__}, "
        f"libxml2 {'.'.join(map(str, etree.LIBXML_VERSION))}"
    )
    print(f"{args.isps} ISPs per Period; median of {rounds} rounds x {batch} calls, one thread")
    print()
    header = (
        f"{'type':<30} {'inner B':>8} {'signed B':>8} {'open':>7} {'decode':>7} "
        f"{'path':>7} {'floor':>7} {'ratio':>6} {'path msg/s':>10}"
    )
    print("UFTP path (open + decode) next to the floor on the same bytes, µs/msg")
    print(header)
    results: dict[str, dict[str, float]] = {}
    for name in names:
        s = signed[name]
        t = results[name] = per_call_us(steps(s), batch=batch, rounds=rounds)
        print(
            f"{name:<30} {len(s.inner):8d} {len(s.raw):8d} {t['open']:7.1f} "
            f"{t['decode']:7.1f} {t['path']:7.1f} {t['floor']:7.1f} "
            f"{t['path'] / t['floor']:5.2f}x {1e6 / t['path']:10.0f}",
            flush=True,
        )

    s = signed[detail]
    public = keys[s.message.envelope.sender_domain].public_key()
    root = etree.fromstring(s.inner, plain)
    order = messages["FlexOrder"]
    assert isinstance(order, FlexOrder)
    accepted = make_response(order, None)
    rejected = make_response(order, 'ISP 97 > 96 & "<limit>"')
    response_xml = codec.encode(accepted)
    timings = {
        "open": results[detail]["open"],
        "decode": results[detail]["decode"],
        "open+decode": results[detail]["path"],
        **per_call_us(
            {
                "floor: verify": lambda: public.verify(s.signature, s.inner),
                "floor: parse": lambda: etree.fromstring(s.inner, plain),
                "floor: validate": lambda: schema.validate(root),
            },
            batch=batch,
            rounds=rounds,
        ),
        "floor: verify+parse+validate": results[detail]["floor"],
        **per_call_us(
            {
                "encode(response)": lambda: codec.encode(accepted),
                "encode(rejection)": lambda: codec.encode(rejected),
                "sign(response)": lambda: signing.sign(response_xml, gridgate_key),
                "render(response)": lambda: uftp.render(accepted, sender_role=Role.AGR),
            },
            batch=batch,
            rounds=rounds,
        ),
    }
    print()
    print(
        f"{detail}: inner XML {len(s.inner)} bytes, SignedMessage {len(s.raw)} bytes; "
        f"FlexOrderResponse {len(response_xml)} bytes"
    )
    print(f"{'step':<30} {'µs/msg':>9} {'msg/s':>10}")
    for step, us in timings.items():
        print(f"{step:<30} {us:9.1f} {1e6 / us:10.0f}")
    path_us = timings["open+decode"]
    floor_us = timings["floor: verify+parse+validate"]
    print()
    print(
        f"UFTP path alone (verify + parse + validate + map), {detail}: {path_us:.1f} µs/msg = "
        f"{1e6 / path_us:.0f} msg/s; floor in this run: {floor_us:.1f} µs/msg = "
        f"{1e6 / floor_us:.0f} msg/s ({path_us / floor_us:.2f}x the floor)"
    )


if __name__ == "__main__":
    main()
