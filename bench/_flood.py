"""The flooding party of bench/deploy_load.py, in its own light process (no torch).

    python bench/_flood.py PORT CA_PEM THREADS

Every thread re-issues the authenticated party ``flooder``'s long poll as soon as it returns
(refused or not), for as long as the process lives.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import grpc

from fedsilo.deploy.proto import fedsilo_pb2 as pb
from fedsilo.deploy.proto import fedsilo_pb2_grpc as pb_grpc

FLOODER = "flooder"
WIRE_VERSION = 2  # fedsilo.deploy.service.WIRE_VERSION (not imported: it pulls in torch)


def main(port: int, ca: str, threads: int) -> None:
    # In a deployment the flooder runs on its own machine; here it shares two cores with the
    # server and the honest parties, so it gets only what they leave (nice 19): what is
    # measured is what its calls cost the server, not this box's CPU going to its client.
    os.nice(19)
    with open(ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    channel = grpc.secure_channel(
        f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", "localhost")]
    )
    stub = pb_grpc.CoordinatorStub(channel)  # type: ignore[no-untyped-call]
    meta = (("x-fedsilo-party", FLOODER), ("authorization", f"Bearer {FLOODER}"))
    request = pb.PullRequest(schema_version=WIRE_VERSION, party=FLOODER)

    def loop() -> None:
        while True:
            with contextlib.suppress(grpc.RpcError):
                stub.Pull(request, metadata=meta, timeout=30)

    for _ in range(threads):
        threading.Thread(target=loop, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
