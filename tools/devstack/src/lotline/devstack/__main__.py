"""The `lotline-devstack` command: up, down, status, reset and topics for the local stack, acls
for any broker, and strimzi for Kubernetes."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from lotline.devstack import strimzi
from lotline.devstack.kafka import run_async
from lotline.devstack.process import StackError
from lotline.devstack.security import apply_acls, principals
from lotline.devstack.services import LocalServices
from lotline.devstack.stack import LocalStack, ensure_topics
from lotline.runtime.settings import Settings

log = logging.getLogger("lotline.devstack")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lotline-devstack",
        description="Local Kafka (KRaft) and FerretDB for Lotline, without Docker.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start Kafka and FerretDB (if needed) and create the topics")
    commands.add_parser("down", help="stop the processes `up` started")
    commands.add_parser("status", help="show what runs; exit 3 unless everything answers")
    commands.add_parser("reset", help="down, then delete the stack's data")
    services = commands.add_parser("services", help="run Lotline's four services beside it")
    services.add_argument("action", choices=["up", "down"])
    topics = commands.add_parser(
        "topics", help="create the topics on KAFKA_BOOTSTRAP_SERVERS (any broker)"
    )
    topics.add_argument(
        "--replication-factor", type=int, default=None, help="default: min(3, brokers)"
    )
    commands.add_parser(
        "acls",
        help="set the contract's ACLs on KAFKA_BOOTSTRAP_SERVERS (any broker), logged in as "
        "KAFKA_USERNAME, who must be allowed to alter ACLs",
    )
    resources = commands.add_parser(
        "strimzi",
        help="print the contract's topics and users (with their ACLs) as Strimzi KafkaTopic and "
        "KafkaUser resources, as deploy/kubernetes/base/kafka/contract.yaml holds them",
    )
    resources.add_argument("--cluster", default=strimzi.CLUSTER, help="the Kafka resource's name")
    resources.add_argument("--partitions", type=int, default=strimzi.PARTITIONS)
    args = parser.parse_args(argv)
    if args.command == "strimzi":
        sys.stdout.write(strimzi.render(args.cluster, args.partitions))
        return 0

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    # aiokafka logs every refused connection while the broker starts; the command says
    # itself what went wrong.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    try:
        if args.command == "topics":
            return _topics(args.replication_factor)
        if args.command == "acls":
            return _acls()
        stack = LocalStack.from_env()
        if args.command == "up":
            started = time.monotonic()
            endpoints = stack.up()
            print(f"KAFKA_BOOTSTRAP_SERVERS={endpoints.kafka_bootstrap}")
            print(f"MONGODB_URL={endpoints.mongodb_url}")
            log.info("stack is up (%.1f s)", time.monotonic() - started)
        elif args.command == "down":
            if not stack.down():
                log.info("nothing was running")
        elif args.command == "reset":
            stack.reset()
        elif args.command == "status":
            return _status(stack)
        elif args.command == "services":
            _services(LocalServices(stack.dir), args.action)
    except StackError as error:
        print(f"lotline-devstack {args.command}: {error}", file=sys.stderr)
        return 1
    except ValidationError as error:
        problems = "; ".join(_describe(problem) for problem in error.errors())
        print(f"lotline-devstack: invalid setting: {problems}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _services(services: LocalServices, action: str) -> None:
    if action == "down":
        stopped = services.down()
        log.info("stopped: %s", ", ".join(stopped) if stopped else "nothing was running")
        return
    for service, state in services.up():
        log.info("%-16s %s  %s", service.name, service.url, state)
    log.info("OpenAPI docs at <url>/docs; `make stop` stops the services")


def _describe(problem: ErrorDetails) -> str:
    message = problem["msg"].removeprefix("Value error, ")
    where = "LOTLINE_" + ".".join(map(str, problem["loc"])).upper() if problem["loc"] else ""
    return f"{where}: {message}" if where else message


def _status(stack: LocalStack) -> int:
    healthy = True
    for service in stack.status():
        if service.pid is None:
            state = "stopped"
        elif service.other_ports:
            state = f"running, pid {service.pid}, on other ports than LOTLINE_* now name"
        elif service.ready:
            state = f"running, pid {service.pid}, answering"
        else:
            state = f"running, pid {service.pid}, NOT answering"
        healthy = healthy and service.ready
        print(f"{service.name:9} {service.endpoint:28} {state}  (log: {service.log_file})")
    return 0 if healthy else 3


def _topics(replication_factor: int | None) -> int:
    settings = Settings()
    created = ensure_topics(
        settings.kafka_bootstrap_servers,
        settings.kafka_partitions,
        replication_factor=replication_factor,
        client_options=settings.kafka_client_options(),
    )
    names = ", ".join(created) if created else "none, all exist"
    log.info("topics created on %s: %s", settings.kafka_bootstrap_servers, names)
    return 0


def _acls() -> int:
    settings = Settings()
    if not settings.kafka_username:
        raise StackError("set KAFKA_USERNAME and KAFKA_PASSWORD to a principal that may alter ACLs")
    changes = run_async(
        apply_acls(settings.kafka_bootstrap_servers, settings.kafka_client_options())
    )
    log.info(
        "ACLs on %s: created %d, deleted %d, kept %d (principals: %s)",
        settings.kafka_bootstrap_servers,
        changes.created,
        changes.deleted,
        changes.kept,
        ", ".join(principals()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
