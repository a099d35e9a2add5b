"""The task kinds of vertical learning, apart from the code that answers them.

A deployed party process routes these kinds to its vertical agent
(:class:`~fedsilo.vertical.agent.VerticalPartyAgent`), and refuses them with a config error
when it has no ``[vertical]`` data. The router needs the kinds without the agent, whose
homomorphic-encryption and PSI libraries are the ``vertical`` extra (:mod:`fedsilo.extras`).
"""

from __future__ import annotations

from fedsilo.protocol.messages import TaskKind

ROLE_KINDS = frozenset(
    {
        TaskKind.VERTICAL_KEYS,
        TaskKind.VERTICAL_UNMASKED,
        TaskKind.HETERO_LR_FORWARD,
        TaskKind.HETERO_LR_RESIDUAL,
        TaskKind.HETERO_LR_GRADIENT,
        TaskKind.HETERO_LR_UPDATE,
        TaskKind.HETERO_LR_LOSS,
        TaskKind.HETERO_LR_PREDICT,
        TaskKind.SB_STEP,
        TaskKind.SB_SETUP,
        TaskKind.SB_GRADIENTS,
        TaskKind.SB_HISTOGRAMS,
        TaskKind.SB_SPLIT,
        TaskKind.SB_ROUTE,
    }
)
"""Training steps the agent hands to its role (hetero LR or SecureBoost) after the setup."""
VERTICAL_KINDS = ROLE_KINDS | {
    TaskKind.PSI_OPEN,
    TaskKind.PSI_REQUEST,
    TaskKind.PSI_SETUP,
    TaskKind.PSI_INTERSECT,
    TaskKind.PSI_FINISH,
    TaskKind.VERTICAL_SETUP,
    TaskKind.VERTICAL_SAVE,
    TaskKind.VERTICAL_SCORE_SETUP,
    TaskKind.VERTICAL_PREDICTIONS,
    TaskKind.VERTICAL_IMPORTANCE,
}
"""Task kinds a deployed party process routes to its vertical agent."""
