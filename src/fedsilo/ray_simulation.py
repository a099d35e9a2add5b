"""Simulated parties on Ray: ``fedsilo simulate JOB --ray auto|ADDRESS`` (the ``ray`` extra).

The coordinator's round loop and the parties' code are the simulation's; only where the parties
run changes. :class:`RayTransport` implements the one :class:`~fedsilo.runtime.transport.Transport`
method: each task is encoded (:meth:`Message.encode`, safetensors, no pickle of our objects) and
put in Ray's object store once, the party's host actor gets the object reference, answers with
the reply's bytes, and the coordinator decodes them with the same size and sender checks as
in-process. Parties live in a pool of :class:`PartyHost` actors (one CPU each, as many as the
cluster's CPUs or ``[simulation] workers``, never more than parties): party ``i`` of the sorted
names on host ``i mod hosts``, so a host holds its parties' state (setup, ledger, audit log)
across rounds, one host's parties answer one after another and hosts run in parallel.

Each host builds its parties itself from the job (the validated job as JSON, the party names,
each party's identity key and the roster): it reads the job's data source the way the
simulation does (built-in datasets ship in packages; file paths must exist on the node) and
computes with one torch thread, so the model equals the in-process run's bit for bit for the
same job and seed (tests/test_ray_simulation.py). Parties train one by one inside a host: a
job with ``[simulation] vectorize = "on"`` is refused, ``"auto"`` trains without it.

A party whose host died or did not answer within the exchange's deadline is a failure with its
reason, as in-process; its late reply is dropped. On an existing cluster (docs/ray.md) every
node needs fedsilo with the same version and the job's data files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedsilo.config import JobConfig, VectorizeMode, parse_job
from fedsilo.errors import ConfigError, ProtocolError
from fedsilo.privacy.secagg.identity import Identity
from fedsilo.protocol.messages import DEFAULT_MAX_MESSAGE_BYTES, Message
from fedsilo.runtime.transport import Gathered

log = logging.getLogger(__name__)


class PartyHost:
    """A Ray actor holding some simulated parties (see the module docstring)."""

    def __init__(
        self,
        job: dict[str, Any],
        keys: Mapping[str, bytes],
        roster: Mapping[str, bytes],
        audit_dir: str | None,
    ) -> None:
        import torch

        from fedsilo.simulation import load_simulated_data, simulated_agents, simulated_threat

        torch.set_num_threads(1)  # as every simulated party (simulation.one_torch_thread)
        config = parse_job(job, source="the job sent to a Ray party host")
        sim = load_simulated_data(config)
        identities = {
            name: Identity(
                name, Ed25519PrivateKey.from_private_bytes(raw), roster, simulated_threat(config)
            )
            for name, raw in keys.items()
        }
        folder = None if audit_dir is None else Path(audit_dir)
        self._agents = simulated_agents(config, sim, identities, folder)

    def handle(self, name: str, data: bytes) -> bytes:
        return self._agents[name].handle(data)


class RayTransport:
    """Parties as :class:`PartyHost` actors; tasks and replies through Ray's object store."""

    def __init__(
        self,
        hosts: Mapping[str, Any],
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._hosts = dict(hosts)  # party name -> its host's actor handle
        self._max_bytes = max_message_bytes

    def party_names(self) -> list[str]:
        return sorted(self._hosts)

    def exchange(self, tasks: Mapping[str, Message], *, timeout_s: float) -> Gathered:
        replies: dict[str, Message] = {}
        failures: dict[str, str] = {}
        pending: dict[Any, str] = {}
        for name, task in tasks.items():
            host = self._hosts.get(name)
            if host is None:
                failures[name] = "not connected"
                continue
            pending[host.handle.remote(name, ray.put(task.encode()))] = name
        started = time.monotonic()
        ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=timeout_s)
        for ref in late:
            failures[pending[ref]] = f"no reply within the {timeout_s:g} s deadline"
        for ref in ready:
            name = pending[ref]
            try:
                reply = Message.decode(ray.get(ref), max_bytes=self._max_bytes)
            except ProtocolError as exc:
                log.warning("rejected reply from party '%s': %s", name, exc)
                failures[name] = str(exc)
                continue
            except ray.exceptions.RayError as exc:  # the host died or raised
                log.warning("party %s failed on Ray: %s", name, exc)
                failures[name] = f"party failed on Ray: {type(exc).__name__}: {exc}"
                continue
            if reply.sender != name:
                failures[name] = f"reply claims to be from {reply.sender!r}"
            else:
                replies[name] = reply
        log.debug("ray exchange of %d tasks: %.3f s", len(pending), time.monotonic() - started)
        return Gathered({n: replies[n] for n in tasks if n in replies}, failures)


def connect(address: str) -> bool:
    """Join the Ray cluster at ``address`` ("auto": the one this machine runs; "local": a new
    one in this process) unless this process already did; True if this call connected."""
    if ray.is_initialized():
        return False
    try:
        ray.init(
            address=None if address == "local" else address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError) as exc:  # no cluster there; another Ray version
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"--ray {address}: cannot join a Ray cluster ({reason}). Start one with `ray start "
            "--head`, pass its address (HOST:6379 or ray://HOST:10001), or use --ray local"
        ) from None
    return True


def start_hosts(
    job: JobConfig,
    keys: Mapping[str, Ed25519PrivateKey],
    roster: Mapping[str, bytes],
    audit_dir: Path | None,
    workers: int | None,
) -> RayTransport:
    """Start the party hosts on the connected cluster; the transport to them."""
    if job.simulation.vectorize is VectorizeMode.ON:
        raise ConfigError(
            'simulation.vectorize = "on" is not available on Ray: each Ray host trains its '
            'parties one by one. Set vectorize = "auto" or "off", or run without --ray'
        )
    names = sorted(keys)
    cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
    count = max(1, min(len(names), workers if workers is not None else cpus))
    doc = job.with_base_dir(Path.cwd()).model_dump(mode="json")  # a host may start elsewhere
    folder = None if audit_dir is None else str(Path(audit_dir).resolve())
    actor = ray.remote(num_cpus=1)(PartyHost)
    hosts = []
    for i in range(count):
        mine = names[i::count]
        raw = {n: _raw(keys[n]) for n in mine}
        hosts.append(actor.remote(doc, raw, dict(roster), folder))
    return RayTransport({n: hosts[i % count] for i, n in enumerate(names)})


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
