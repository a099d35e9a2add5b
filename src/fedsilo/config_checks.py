"""Privacy settings that cannot work together, refused at config time with the reason."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fedsilo.aggregation import AggregatorKind

if TYPE_CHECKING:
    from fedsilo.config import JobConfig


def check_privacy(job: JobConfig) -> None:
    """Raise ``ValueError`` (turned into a ConfigError by the parser) on a bad combination."""
    from fedsilo.config import ClientDPNoise, SecAggVariant

    sa, dp = job.privacy.secure_aggregation, job.privacy.client_dp
    robust = job.aggregation.aggregator is not AggregatorKind.MEAN
    if sa.enabled and robust:
        raise ValueError(
            f"aggregation.aggregator = '{job.aggregation.aggregator.value}' cannot run with "
            "secure aggregation: the coordinator sees only the sum of the updates, so it cannot "
            "rank or trim individual ones. Use aggregator = 'mean' or disable "
            "privacy.secure_aggregation"
        )
    if sa.enabled and job.num_parties_hint() < 3:
        raise ValueError(
            "secure aggregation needs at least 3 parties: with 2, each party learns the other's "
            "update by subtracting its own from the sum"
        )
    if sa.enabled and sa.neighbours is not None and sa.variant is not SecAggVariant.SECAGG_PLUS:
        raise ValueError(
            "privacy.secure_aggregation.neighbours applies to variant = 'secagg+' only "
            "(plain secagg pairs every party with every other)"
        )
    if sa.enabled:
        n = job.num_parties_hint()
        value_bits = sa.bits - math.ceil(math.log2(n))
        if value_bits < 8:
            raise ValueError(
                f"privacy.secure_aggregation.bits = {sa.bits} leaves {value_bits} bits per value "
                f"once the sum of {n} parties has room not to overflow; raise bits (<= 48)"
            )
    if dp.enabled and job.privacy.delta is None:
        raise ValueError(
            "client-level DP needs privacy.delta (e.g. 1e-5, below 1 / number of parties): "
            "epsilon is only meaningful at a stated delta"
        )
    if dp.enabled and job.privacy.record_dp.enabled:
        raise ValueError(
            "privacy.record_dp and privacy.client_dp are both enabled; one job reports one DP "
            "level. Use record_dp for a few organizations (cross-silo: it protects each "
            "party's individuals) or client_dp for many parties, not both"
        )
    if dp.enabled and robust:
        raise ValueError(
            f"client-level DP calibrates noise to the mean of clipped updates; aggregator "
            f"'{job.aggregation.aggregator.value}' has a different sensitivity. Use 'mean'"
        )
    if dp.enabled and dp.noise is ClientDPNoise.DISTRIBUTED and not sa.enabled:
        raise ValueError(
            "client_dp.noise = 'distributed' needs privacy.secure_aggregation.enabled: without "
            "it the coordinator sees each party's update with only 1/sqrt(m) of the noise. Use "
            "noise = 'coordinator' (trusted coordinator) or enable secure aggregation"
        )
