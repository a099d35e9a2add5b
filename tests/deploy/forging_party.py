"""A malicious party process: the real party (party.toml, PartyProcess, TaskRouter) whose
replies are rewritten on their way out, the way a hostile organization would send them.

    python tests/deploy/forging_party.py PARTY.toml

Per round it forges (every other reply is honest):

- fit round 1: ``train_loss`` NaN; fit round 2: ``train_loss`` Infinity;
- evaluate round 3: ``metrics.accuracy`` NaN;
- evaluate round 4: a perfect confusion matrix over a million examples, loss 0 (the issue's
  "accuracy 1.0 with loss 0.0");
- evaluate round 5: accuracy 1.0057 with a negative loss;
- evaluate round 6: the honest example count and statistics, perfect metrics (accuracy 1.0,
  loss 0.0): within every bound, refused only because the statistics imply other metrics.

It imports only fedsilo, so it runs as a plain script beside the real party processes.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from safetensors.numpy import save as st_save

from fedsilo.deploy.config import load_party_config
from fedsilo.deploy.party_process import PartyProcess, load_agent, use_threads
from fedsilo.protocol.messages import SCHEMA_VERSION, Message, TaskKind
from fedsilo.runtime.transport import Handler


def perfect(body: dict[str, Any]) -> None:
    body["num_examples"] = 10**6
    body["stats"] = {
        "loss_sum": 0.0,
        "confusion": [[500_000, 0], [0, 500_000]],
        "score_hist": [[500_000] + [0] * 999, [0] * 999 + [500_000]],
    }
    body["metrics"] = {"loss": 0.0, "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}


def above_one(body: dict[str, Any]) -> None:
    body["metrics"]["accuracy"] = 1.0057
    body["metrics"]["loss"] = -0.018
    body["stats"]["loss_sum"] = -0.018 * body["num_examples"]


def claims_perfect(body: dict[str, Any]) -> None:
    body["metrics"] |= {"loss": 0.0, "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}


def forge(kind: TaskKind, rnd: int, body: dict[str, Any]) -> bool:
    """Rewrite ``body`` in place; False when this reply goes out honest."""
    if kind is TaskKind.FIT and rnd in (1, 2):
        body["train_loss"] = float("nan") if rnd == 1 else float("inf")
    elif kind is TaskKind.EVALUATE and rnd == 3:
        body["metrics"]["accuracy"] = float("nan")
    elif kind is TaskKind.EVALUATE and rnd == 4:
        perfect(body)
    elif kind is TaskKind.EVALUATE and rnd == 5:
        above_one(body)
    elif kind is TaskKind.EVALUATE and rnd == 6:
        claims_perfect(body)
    else:
        return False
    return True


class Forging:
    def __init__(self, inner: Handler) -> None:
        self._inner = inner

    def handle(self, data: bytes) -> bytes:
        reply = self._inner.handle(data)
        msg = Message.decode(reply)
        body = json.loads(json.dumps(msg.body))
        if msg.fault is not None or not forge(msg.kind, msg.round, body):
            return reply
        header = {
            "version": SCHEMA_VERSION,
            "kind": msg.kind.value,
            "job_id": msg.job_id,
            "round": msg.round,
            "sender": msg.sender,
            "body": body,
            "arrays": list(msg.arrays),
        }
        text = json.dumps(header, allow_nan=True)
        logging.getLogger("forging").warning("forged %s round %d", msg.kind.value, msg.round)
        return bytes(st_save(dict(msg.arrays), metadata={"fedsilo": text}))


def main(config: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load_party_config(Path(config))
    agent = Forging(load_agent(cfg))
    use_threads(cfg)
    PartyProcess(cfg, agent).run()


if __name__ == "__main__":
    main(sys.argv[1])
