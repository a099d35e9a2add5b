"""What the coordinator accepts from a party: typed bodies, checked against what it declared.

Every reply is parsed into its body model (:mod:`fedsilo.protocol.bodies`: finite floats,
non-negative counts, no unknown field) and then checked against the context the body cannot
know alone: the task's kind and round, the counts the party declared at setup, the job's
parameter names, shapes and dtypes, the job's classes. A reply that fails raises
:class:`~fedsilo.errors.ProtocolError` whose message names the party, the round and the field;
the round loop treats it exactly as a missing reply.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
from pydantic import TypeAdapter

from fedsilo.errors import ProtocolError
from fedsilo.models import Params, check_params
from fedsilo.protocol.bodies import EvaluateReply, FitReply, parse_body
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.training import EvalStats
from fedsilo.training.metrics import AUC_BINS, MAX_EXAMPLE_LOSS

B = TypeVar("B")

# Reported metrics must equal what the reported statistics imply (the party computes both
# from the same predictions); AUC is exact at the party and binned in the statistics.
METRIC_TOLERANCE = 1e-6


def _where(reply: Message, rnd: int) -> str:
    return f"party {reply.sender!r} round {rnd}"


def reply_body(schema: type[B] | TypeAdapter[B], reply: Message, kind: TaskKind, rnd: int) -> B:
    """The reply's typed body, after checking it answers a ``kind`` task of round ``rnd``."""
    where = _where(reply, rnd)
    if reply.fault is not None:
        raise ProtocolError(f"{where}: the party reported: {reply.fault.message}")
    if reply.kind is not kind:
        raise ProtocolError(
            f"{where}: field 'kind' is {reply.kind.value!r}, the task was {kind.value!r}"
        )
    if reply.round != rnd:
        raise ProtocolError(
            f"{where}: field 'round' is {reply.round}: a reply for another round is not accepted"
        )
    return parse_body(schema, reply, where=f"party {reply.sender!r}")


def accept_fit(
    reply: Message, rnd: int, params: Params, declared_train: int
) -> tuple[Params, FitReply]:
    """A plain fit reply: its parameters in the global order, and its checked body."""
    body = reply_body(FitReply, reply, TaskKind.FIT, rnd)
    where = _where(reply, rnd)
    try:
        check_params(reply.arrays, params)
    except ProtocolError as exc:
        raise ProtocolError(f"{where}: fit arrays: {exc}") from None
    if body.num_examples > declared_train:
        raise ProtocolError(
            f"{where}: fit field 'num_examples' is {body.num_examples}, more than the "
            f"{declared_train} training rows the party declared at setup"
        )
    # Same order as the global parameters, whatever order the party sent them in.
    return {name: reply.arrays[name] for name in params}, body


def accept_evaluation(
    reply: Message, rnd: int, num_classes: int, declared_holdout: int
) -> tuple[dict[str, float], EvalStats]:
    """An evaluation reply: the party's metrics and its summable statistics, consistent."""
    body = reply_body(EvaluateReply, reply, TaskKind.EVALUATE, rnd)
    where = f"{_where(reply, rnd)}: evaluate field"
    n = body.num_examples
    if n > declared_holdout:
        raise ProtocolError(
            f"{where} 'num_examples' is {n}, more than the {declared_holdout} held-out rows "
            "the party declared at setup"
        )
    rows = body.stats.confusion
    widths = sorted({len(r) for r in rows})
    if len(rows) != num_classes or widths != [num_classes]:
        got = f"{len(rows)}x{'/'.join(map(str, widths)) or 0}"
        raise ProtocolError(
            f"{where} 'stats.confusion' is {got}, expected {num_classes}x{num_classes} "
            "(the job's classes)"
        )
    confusion = np.asarray(rows, dtype=np.int64)
    if int(confusion.sum()) != n:
        raise ProtocolError(
            f"{where} 'stats.confusion' counts {int(confusion.sum())} examples, the reply's "
            f"'num_examples' is {n}"
        )
    if body.stats.loss_sum > n * MAX_EXAMPLE_LOSS:
        raise ProtocolError(
            f"{where} 'stats.loss_sum' is {body.stats.loss_sum:g}, above the largest possible "
            f"loss of {n} examples ({n * MAX_EXAMPLE_LOSS:g})"
        )
    hist = None
    if num_classes == 2:
        if body.stats.score_hist is None:
            raise ProtocolError(f"{where} 'stats.score_hist' is missing (a binary job)")
        if len(body.stats.score_hist) != 2 or {len(r) for r in body.stats.score_hist} != {AUC_BINS}:
            raise ProtocolError(f"{where} 'stats.score_hist' is not 2x{AUC_BINS}")
        hist = np.asarray(body.stats.score_hist, dtype=np.int64)
        if not np.array_equal(hist.sum(axis=1), confusion.sum(axis=1)):
            raise ProtocolError(
                f"{where} 'stats.score_hist' counts other examples per class than 'stats.confusion'"
            )
    elif body.stats.score_hist is not None:
        raise ProtocolError(f"{where} 'stats.score_hist' is set for a multiclass job")
    stats = EvalStats(body.stats.loss_sum, confusion, hist)
    implied = stats.metrics()
    metrics = body.metrics.model_dump(exclude_none=True)
    for name, value in metrics.items():
        expected = implied.get(name)
        if (
            name != "auc"
            and expected is not None
            and not math.isclose(
                value, expected, rel_tol=METRIC_TOLERANCE, abs_tol=METRIC_TOLERANCE
            )
        ):
            raise ProtocolError(
                f"{where} 'metrics.{name}' is {value:.6g}, its statistics imply {expected:.6g}"
            )
    return metrics, stats
