"""The `gridgate` command."""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.config import DOMAIN_RE, Settings, load_settings
from gateway.errors import ConfigError
from gateway.tasks import run


def _settings(path: str) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as e:
        print(f"config error:\n{e}", file=sys.stderr)
        raise SystemExit(2) from e


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings(args.file)
    from gateway.routing import Directory

    directory = Directory.from_settings(settings)
    check = None
    if settings.gridcheck.method == "powerflow":
        # the models are loaded as `run` would: a missing file or node fails here, not at start
        from gateway.gridcheck.powerflow import PowerFlowCheck

        try:
            check = PowerFlowCheck.from_settings(settings, directory)
        except ConfigError as e:
            print(f"config error:\n{e}", file=sys.stderr)
            return 2
    g = settings.gateway
    print(f"{args.file}: OK")
    print(
        f"gateway {g.uftp_domain} on {g.listen}, database {g.database_url}, "
        f"MQTT {settings.mqtt.url}, market {settings.market.isp_duration} "
        f"{settings.market.time_zone}"
    )
    for p in directory.participants.values():
        keys = "keys and endpoint by DNS" if p.found_by_dns else f"{len(p.public_keys)} key(s)"
        print(
            f"  {p.role:<3} {p.id:<16} {p.uftp_domain or '-':<28} "
            f"{keys}  endpoint {p.endpoint or '-'}  "
            f"mqtt {p.mqtt_prefix or '-'}"
        )
        for cp in p.congestion_points:
            print(f"        congestion point {cp.ean} limit {cp.limit_w} W {cp.name}")
        for r in p.resources:
            print(
                f"        resource {r.id} at {r.connection_ean} behind {r.congestion_point} "
                f"[{r.min_w}, {r.max_w}] W"
            )
    if check is not None:
        for zone in settings.gridcheck.zones:
            model = check.model_of(zone.id)
            assert model is not None
            print(
                f"  grid zone {zone.id} of {zone.dso}: model {model.version} of "
                f"{model.created.isoformat()}, {len(model.nodes)} nodes, "
                f"{len(model.branches)} branches, interface at {model.nodes[model.slack].name}"
            )
    return 0


def cmd_grid_model(args: argparse.Namespace) -> int:
    """Load a grid model as the power-flow check would, and show what it holds and how its
    own operating point flows: the way to check a CGMES export before configuring it."""
    import numpy as np

    from gateway.gridcheck.grid import AcSolver, GridModelError, load_model

    paths = [Path(p) for p in args.files]
    try:
        model = load_model(
            paths[0] if len(paths) == 1 else paths, zone=args.zone, format=args.format
        )
    except GridModelError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    lines = [b for b in model.branches if b.kind == "line"]
    transformers = [b for b in model.branches if b.kind == "transformer"]
    age = datetime.now(UTC) - model.created
    print(
        f"zone {model.zone}: model version {model.version}, time stamp "
        f"{model.created.isoformat()} ({age.total_seconds() / 3600:.0f} h old"
        + (
            ": older than the default max_model_age_hours of 720, so the check would "
            "treat it as stale and fail safe)"
            if age > timedelta(hours=720)
            else ")"
        )
    )
    print(
        f"  {len(model.nodes)} nodes, {len(lines)} lines, {len(transformers)} transformers; "
        f"TSO-DSO interface (slack) at {model.nodes[model.slack].name}"
    )
    print(
        f"  operating point: {model.base_p_w.sum() / 1e6:.3f} MW, "
        f"{model.base_q_var.sum() / 1e6:.3f} Mvar net consumption"
    )
    solution = AcSolver(model).solve(model.base_p_w[None, :], model.base_q_var[None, :])
    if not solution.converged[0]:
        print("  its power flow does not converge", file=sys.stderr)
        return 1
    u, loading = solution.u_pu[0], solution.loading[0]
    low, high = int(np.nanargmin(u)), int(np.nanargmax(u))
    print(
        f"  power flow: voltages {u[low]:.4f} pu ({model.nodes[low].name}) to {u[high]:.4f} "
        f"pu ({model.nodes[high].name}); interface {solution.interface_p_w[0] / 1e6:.3f} MW"
    )
    for node in model.nodes if args.nodes else ():
        print(f"    node {node.name:<24} {node.u_rated_v / 1000:8.2f} kV  {u[node.index]:.4f} pu")
    order = np.argsort(-np.nan_to_num(loading, nan=-1.0))
    for j in order[: args.top]:
        b = model.branches[int(j)]
        rating = f"{b.rating:.0f} A" if b.kind == "line" else f"{b.rating / 1e6:.1f} MVA"
        shown = "no rating" if np.isnan(loading[j]) else f"{loading[j] * 100:.1f} %"
        print(f"    {b.kind:<11} {b.name:<24} {shown:>10} of {rating}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    from gateway.app import Gateway

    async def serve() -> None:
        gateway = Gateway(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await gateway.start()
        print(
            f"gridgate serving {settings.gateway.uftp_domain} on "
            f"{settings.gateway.host}:{gateway.port}",
            flush=True,
        )
        await stop.wait()
        await gateway.stop()

    run(serve())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import DEFAULT_TOPOLOGY, default_workdir, run_demo

    workdir = Path(args.dir) if args.dir else default_workdir()
    summary = run(
        run_demo(
            workdir,
            topology=Path(args.config) if args.config else DEFAULT_TOPOLOGY,
            mqtt_url=args.mqtt,
            database_url=args.database,
        )
    )
    ok = summary["audit_ok"] and summary["orders_accepted"] >= 1 and summary["orders_rejected"] >= 1
    return 0 if ok else 1


def cmd_audit_verify(args: argparse.Namespace) -> int:
    database = args.database or _settings(args.config).gateway.database_url
    from gateway.audit.chain import verify_chain
    from gateway.store.db import create_engine, sessionmaker

    async def verify() -> int:
        engine = create_engine(database)
        try:
            async with sessionmaker(engine)() as session:
                report = await verify_chain(session)
        finally:
            await engine.dispose()
        if report.ok:
            print(f"audit chain verified: {report.entries} entries, head {report.head_hash}")
            return 0
        where = f" at entry {report.first_broken}" if report.first_broken else ""
        print(f"audit chain BROKEN{where}: {report.problem}")
        return 1

    return asyncio.run(verify())


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    database = args.database or _settings(args.config).gateway.database_url
    from gateway.store.db import create_engine, current_revision, migrate

    async def upgrade() -> None:
        engine = create_engine(database)
        try:
            await migrate(engine)
            print(f"database at revision {await current_revision(engine)}")
        finally:
            await engine.dispose()

    asyncio.run(upgrade())
    return 0


def cmd_keys_new(args: argparse.Namespace) -> int:
    """Write a UFTP key pair; print the public key and what to publish in DNS."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from adapters.uftp.discovery import (
        DiscoveryError,
        cs1_value,
        endpoint_record_name,
        key_record_name,
        parse_cs1_key,
        version_record_name,
    )
    from adapters.uftp.signing import generate_key_pair, private_key_b64, public_key_b64

    if bool(args.domain) != bool(args.role):
        print(
            "keys new: --domain and --role go together (the record name needs both)",
            file=sys.stderr,
        )
        return 2
    if args.domain and not re.match(DOMAIN_RE, args.domain):
        print(
            f"keys new: --domain {args.domain!r} is not a lower-case domain name", file=sys.stderr
        )
        return 2
    previous: str | None = args.previous
    if previous is not None:
        try:
            parse_cs1_key("--previous", previous)
        except DiscoveryError as e:
            print(f"keys new: {e}", file=sys.stderr)
            return 2
    path = Path(args.out)
    # the secret of the box key: UFTP defines crypto_box for section encryption, which no
    # implementation uses (NOTES §2), but the published box key must have an owner
    box_path = path.with_name(path.name + ".box")
    for target in (path, box_path):
        if target.exists() and not args.force:
            print(f"{target} exists; use --force to replace it", file=sys.stderr)
            return 1
    key, public = generate_key_pair()
    box = X25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_secret(path, private_key_b64(key))
    _write_secret(box_path, base64.b64encode(box.private_bytes_raw()).decode())
    txt = cs1_value(base64.b64decode(public_key_b64(public)), box.public_key().public_bytes_raw())
    print(f"secret key written to {path} (libsodium 64-byte form, base64)")
    print(f"box secret key written to {box_path} (X25519, base64; UFTP does not encrypt yet)")
    print(f"public key: {public_key_b64(public)}")
    print(f"DNS TXT value: {txt}")
    for role in args.role or ():
        name = key_record_name(args.domain, role)
        if previous is None:
            print(f'DNS record: {name}. IN TXT "{txt}"')
            continue
        # gridgate verifies with either key; shapeshifter-uftp only with the first string
        print(f"key rotation of {name}:")
        print(f'  1. publish both, the key in use first:   IN TXT "{previous}" "{txt}"')
        print(f'  2. signing with {path}, new key first:   IN TXT "{txt}" "{previous}"')
        print(f'  3. a day later, the new key alone:      IN TXT "{txt}"')
    if args.domain:
        print(f'with: {version_record_name(args.domain)}. IN TXT "3.1.0"')
        for role in args.role:
            print(f"      {endpoint_record_name(args.domain, role)}. IN CNAME <endpoint host>.")
    return 0


def _write_secret(path: Path, text: str) -> None:
    """Write a secret readable by its owner only (created so, never world-readable)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text + "\n")


def cmd_certs_init(args: argparse.Namespace) -> int:
    from gateway.tls import write_dev_pki

    written = write_dev_pki(Path(args.dir), hosts=args.host, clients=args.client)
    for path in written:
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridgate", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="serve the gateway of a config file")
    p.add_argument("-c", "--config", required=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run a whole T-D coordination day on embedded defaults")
    p.add_argument("--dir", help="work folder (default: a new temporary folder)")
    p.add_argument("--config", help="topology file (default: config/demo.toml)")
    p.add_argument("--mqtt", help="use this broker instead of the embedded one")
    p.add_argument("--database", help="use this database URL instead of SQLite")
    p.set_defaults(func=cmd_demo)

    config = sub.add_parser("config", help="operator config files").add_subparsers(
        dest="config_command", required=True
    )
    p = config.add_parser("check", help="validate a config file and print its topology")
    p.add_argument("file")
    p.set_defaults(func=cmd_config_check)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_command", required=True
    )
    p = audit.add_parser("verify", help="check the hash chain; name the first broken entry")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("-c", "--config")
    group.add_argument("--database")
    p.set_defaults(func=cmd_audit_verify)

    db = sub.add_parser("db", help="the database").add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply the migrations")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("-c", "--config")
    group.add_argument("--database")
    p.set_defaults(func=cmd_db_upgrade)

    keys = sub.add_parser("keys", help="UFTP signing keys").add_subparsers(
        dest="keys_command", required=True
    )
    p = keys.add_parser("new", help="write a new Ed25519 key pair; print its DNS TXT value (cs1.)")
    p.add_argument("out", help="file for the secret key (the box key's secret goes to OUT.box)")
    p.add_argument("--force", action="store_true")
    p.add_argument("--domain", help="the UFTP domain the key signs for, to print the record")
    p.add_argument(
        "--role",
        action="append",
        choices=["DSO", "AGR", "CRO"],
        help="a role the domain sends as (repeatable): one _<ROLE>._usef record each",
    )
    p.add_argument(
        "--previous",
        metavar="CS1",
        help="the cs1. value published now: print the records of a key rotation",
    )
    p.set_defaults(func=cmd_keys_new)

    grid = sub.add_parser("grid", help="the grid-security check").add_subparsers(
        dest="grid_command", required=True
    )
    p = grid.add_parser(
        "model", help="load a grid model (CGMES or pandapower JSON) and show its power flow"
    )
    p.add_argument("files", nargs="+", help="the CGMES profiles (or their folder), or one JSON")
    p.add_argument("--format", choices=("cgmes", "pandapower"), required=True)
    p.add_argument("--zone", default="zone", help="the zone id to load it as")
    p.add_argument("--top", type=int, default=5, help="branches to list, most loaded first")
    p.add_argument("--nodes", action="store_true", help="list every node's voltage")
    p.set_defaults(func=cmd_grid_model)

    certs = sub.add_parser("certs", help="TLS material").add_subparsers(
        dest="certs_command", required=True
    )
    p = certs.add_parser("init", help="write a development CA and certificates")
    p.add_argument("dir", help="folder to write into (keep it out of version control)")
    p.add_argument(
        "--host",
        action="append",
        default=None,
        help="server host name or IP (repeatable; default localhost, 127.0.0.1)",
    )
    p.add_argument(
        "--client",
        action="append",
        default=None,
        help="client certificate common name (repeatable)",
    )
    p.set_defaults(func=cmd_certs_init)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
