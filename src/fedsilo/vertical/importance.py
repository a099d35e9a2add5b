"""Per-party feature importance of a vertical model, named only where the party allows it.

* **Hetero LR**: each party's weights act on its standardized columns, so a weight is the
  standardized coefficient (the change in log-odds per standard deviation). A party's total
  is the sum of its absolute coefficients (the guest's intercept is not a feature).
* **SecureBoost**: split count and total gain per feature (XGBoost's ``weight`` and
  ``total_gain``). The guest grows the trees, so it knows the gain and owner of every split;
  it knows its own features by name and a host's splits only as "host h, record r". Each
  host gets the gains of its own records and maps them to its own feature names.

A party's feature names leave it only if its **own** config allows it
(``share_feature_names``: ``[[parties]]`` in a simulated job, ``[vertical]`` in a deployed
party's ``party.toml``; default off); otherwise it reports only its total. The coordinator
never asks for names: it cannot turn the flag on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fedsilo.errors import ProtocolError
from fedsilo.vertical.bodies import FeatureImportance, HostSplits, PartyImportance
from fedsilo.vertical.secureboost.tree import Tree


def lr_importance(
    names: Sequence[str], coefficients: npt.NDArray[np.float64], *, named: bool
) -> PartyImportance:
    """A hetero-LR party's standardized coefficients (``coefficients``: one per feature)."""
    coefs = [float(c) for c in coefficients]
    total = FeatureImportance(coefficient=float(np.sum(np.abs(coefficients))))
    by_feature = (
        {n: FeatureImportance(coefficient=c) for n, c in zip(names, coefs, strict=True)}
        if named
        else None
    )
    return PartyImportance(features=len(names), total=total, by_feature=by_feature)


def _splits(counts: dict[str, int], gains: dict[str, float]) -> dict[str, FeatureImportance]:
    return {n: FeatureImportance(splits=counts[n], gain=gains[n]) for n in counts}


def _tally(
    names: Sequence[str], features: Sequence[int], gains: Sequence[float]
) -> PartyImportance:
    counts = dict.fromkeys(names, 0)
    total = dict.fromkeys(names, 0.0)
    for f, g in zip(features, gains, strict=True):
        counts[names[f]] += 1
        total[names[f]] += g
    return PartyImportance(
        features=len(names),
        total=FeatureImportance(splits=len(features), gain=float(sum(gains))),
        by_feature=_splits(counts, total),
    )


def sb_guest_importance(
    trees: Sequence[Tree], names: Sequence[str], hosts: Sequence[str], *, named: bool
) -> PartyImportance:
    """The guest's own split counts and gains, and each host's split gains by record."""
    own_features: list[int] = []
    own_gains: list[float] = []
    host_splits = {h: HostSplits() for h in hosts}
    for tree in trees:
        for node, left in enumerate(tree.left):
            if left < 0:
                continue
            party, gain = tree.party[node], tree.gain[node]
            if party == 0:
                own_features.append(tree.feature[node])
                own_gains.append(gain)
            else:
                split = host_splits[hosts[party - 1]]
                split.records.append(tree.record[node])
                split.gains.append(gain)
    own = _tally(names, own_features, own_gains)
    return own.model_copy(
        update={"by_feature": own.by_feature if named else None, "host_splits": host_splits}
    )


def sb_host_importance(
    party: str,
    table: Sequence[tuple[int, float]],
    names: Sequence[str],
    splits: HostSplits,
    *,
    named: bool,
) -> PartyImportance:
    """A host's split counts and gains per own feature, from the guest's gains per record."""
    if len(splits.records) != len(splits.gains) or any(r >= len(table) for r in splits.records):
        raise ProtocolError(
            f"party {party!r}: vertical_importance field 'splits': {len(splits.records)} "
            f"records, {len(splits.gains)} gains, {len(table)} split records held"
        )
    features = [table[r][0] for r in splits.records]
    tally = _tally(names, features, splits.gains)
    return tally if named else tally.model_copy(update={"by_feature": None})


def entry(role: str, importance: PartyImportance) -> dict[str, object]:
    """A party's importance as metrics.json holds it (never the hosts' split gains)."""
    dump = importance.model_dump(exclude={"host_splits", "sealed_for"}, exclude_none=True)
    return {"role": role, **dump, "by_feature": dump.get("by_feature")}
