"""Micro-benchmark of the UFTP hot path, per message, next to the floor measured in the same run.

    python bench/uftp_codec.py                 # defaults: 96-ISP FlexOrder, 41 rounds
    python bench/uftp_codec.py --rounds 101 --batch 400

What is timed (each the median over `--rounds` rounds of `--batch` calls, in µs per message):

* open    `UftpCodec.open`: SignedMessage envelope checked, Body base64-decoded, the CS1
          (Ed25519) signature verified with the sender's key;
* decode  `UftpCodec.decode`: the inner XML parsed (hardened), validated against gridgate's
          XSD and mapped to a `FlexOrder` with 96 ISPs;
* encode  `codec.encode` of the FlexOrderResponse gridgate answers with;
* sign    `signing.sign` of those bytes (Ed25519);
* render  `UftpCodec.render`: encode + sign + the SignedMessage envelope;
* floor   what no implementation can skip, on the same bytes: Ed25519 verify of the inner XML,
          a plain `lxml.etree.fromstring` of it and one XSD validation, nothing else.

The "UFTP path" (open + decode) is the issue-3 figure: verify + parse + validate + map per
message; it is printed next to the floor and as messages per second on one core.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
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
    Envelope,
    FlexOrder,
    FlexOrderResponse,
    PowerIsp,
    Result,
    Role,
)
from gateway.routing import Directory, Participant  # noqa: E402

DSO_DOMAIN = "dso.bench.example"
GRIDGATE_DOMAIN = "gridgate.bench.example"
CP = "ean.871685900012636543"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_order(isps: int) -> FlexOrder:
    """A FlexOrder shaped like bench/e2e.py's: `isps` ISPs, eight of them non-zero."""
    return FlexOrder(
        envelope=Envelope(
            message_id=str(uuid.uuid4()),
            conversation_id=str(uuid.uuid4()),
            sender_domain=DSO_DOMAIN,
            recipient_domain=GRIDGATE_DOMAIN,
            sender_role=Role.DSO,
            timestamp=datetime.now(UTC),
        ),
        isp_duration=timedelta(minutes=15),
        time_zone="Europe/Amsterdam",
        period=date.today() + timedelta(days=1),
        congestion_point=CP,
        isps=tuple(PowerIsp(j, -25_000 if 41 <= j < 49 else 0) for j in range(1, isps + 1)),
        price=Decimal("10.00"),
        currency="EUR",
        order_reference="BENCH-1",
        flex_offer_message_id=str(uuid.uuid4()),
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


def per_call_us(fn: Callable[[], object], *, batch: int, rounds: int) -> float:
    """Median over `rounds` of the mean time of `batch` calls, in microseconds."""
    for _ in range(max(10, batch // 10)):  # warm caches, compiled schema, thread-locals
        fn()
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            start = time.perf_counter_ns()
            for _ in range(batch):
                fn()
            samples.append((time.perf_counter_ns() - start) / batch / 1000)
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--isps", type=int, default=96, help="ISPs in the FlexOrder (96)")
    parser.add_argument("--batch", type=int, default=200, help="calls per timed round (200)")
    parser.add_argument("--rounds", type=int, default=41, help="timed rounds; median (41)")
    args = parser.parse_args()
    batch, rounds = args.batch, args.rounds

    dso_key = Ed25519PrivateKey.generate()
    gridgate_key = Ed25519PrivateKey.generate()
    dso_public = dso_key.public_key()
    dso = Participant(
        id="dso",
        role=Role.DSO,
        uftp_domain=DSO_DOMAIN,
        endpoint=None,
        public_keys=(dso_public.public_bytes(Encoding.Raw, PublicFormat.Raw),),
        mqtt_prefix=None,
        congestion_points=(),
        resources=(),
    )
    directory = Directory(participants={"dso": dso}, by_domain={DSO_DOMAIN: dso})
    uftp = UftpCodec(domain=GRIDGATE_DOMAIN, signing_key=gridgate_key, max_bytes=5 << 20)

    order = make_order(args.isps)
    inner = codec.encode(order)
    raw = codec.render_signed_message(DSO_DOMAIN, Role.DSO, signing.sign(inner, dso_key))
    opened = uftp.open(raw, directory)
    decoded = uftp.decode(opened)
    assert isinstance(decoded, FlexOrder) and decoded.isps == order.isps
    accepted = make_response(order, None)
    rejected = make_response(order, 'ISP 97 > 96 & "<limit>"')
    response_xml = codec.encode(accepted)

    schema = codec.schema()
    plain = etree.XMLParser(resolve_entities=False, no_network=True)
    signature, body = signing.sign(inner, dso_key)[:64], inner

    def floor_verify() -> None:
        dso_public.verify(signature, body)

    def floor_parse() -> None:
        etree.fromstring(body, plain)

    root = etree.fromstring(body, plain)

    def floor_validate() -> None:
        schema.validate(root)

    def floor() -> None:
        dso_public.verify(signature, body)
        if not schema.validate(etree.fromstring(body, plain)):
            raise AssertionError("the floor's order is schema-invalid")

    def path() -> None:
        uftp.decode(uftp.open(raw, directory))

    timings = {
        "open": per_call_us(lambda: uftp.open(raw, directory), batch=batch, rounds=rounds),
        "decode": per_call_us(lambda: uftp.decode(opened), batch=batch, rounds=rounds),
        "open+decode": per_call_us(path, batch=batch, rounds=rounds),
        "encode(response)": per_call_us(lambda: codec.encode(accepted), batch=batch, rounds=rounds),
        "encode(rejection)": per_call_us(
            lambda: codec.encode(rejected), batch=batch, rounds=rounds
        ),
        "sign(response)": per_call_us(
            lambda: signing.sign(response_xml, gridgate_key), batch=batch, rounds=rounds
        ),
        "render(response)": per_call_us(
            lambda: uftp.render(accepted, sender_role=Role.AGR), batch=batch, rounds=rounds
        ),
        "floor: verify": per_call_us(floor_verify, batch=batch, rounds=rounds),
        "floor: parse": per_call_us(floor_parse, batch=batch, rounds=rounds),
        "floor: validate": per_call_us(floor_validate, batch=batch, rounds=rounds),
        "floor: verify+parse+validate": per_call_us(floor, batch=batch, rounds=rounds),
    }

    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}")
    print(
        f"python {platform.python_version()}, lxml {etree.__version__}, "
        f"libxml2 {'.'.join(map(str, etree.LIBXML_VERSION))}"
    )
    print(
        f"FlexOrder: {args.isps} ISPs, inner XML {len(inner)} bytes, SignedMessage "
        f"{len(raw)} bytes; FlexOrderResponse {len(response_xml)} bytes"
    )
    print(f"median of {rounds} rounds x {batch} calls, one thread")
    print()
    print(f"{'step':<30} {'µs/msg':>9} {'msg/s':>10}")
    for name, us in timings.items():
        print(f"{name:<30} {us:9.1f} {1e6 / us:10.0f}")
    path_us = timings["open+decode"]
    floor_us = timings["floor: verify+parse+validate"]
    print()
    print(
        f"UFTP path alone (verify + parse + validate + map): {path_us:.1f} µs/msg = "
        f"{1e6 / path_us:.0f} msg/s; floor in this run: {floor_us:.1f} µs/msg = "
        f"{1e6 / floor_us:.0f} msg/s ({path_us / floor_us:.2f}x the floor)"
    )


if __name__ == "__main__":
    main()
