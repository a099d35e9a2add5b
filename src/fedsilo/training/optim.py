"""Local SGD and Adam: torch.optim's CPU update rules, op for op, on one model or many stacked.

:class:`Optimizer` applies ``torch.optim.SGD`` (momentum, L2 weight decay, dampening 0, no
Nesterov) and ``torch.optim.Adam`` (betas (0.9, 0.999), eps 1e-8, L2 weight decay, no
AMSGrad) with the same tensor operations in the same order as torch's single-tensor code
paths (the ones torch runs on CPU), so one model trained with it is bit-identical to one
trained with torch.optim (``tests/training/test_optim.py``). Two reasons not to use
torch.optim itself: constructing a torch optimizer imports ``torch._dynamo`` (~1.1 s of a
process's first training), and vectorized training (:mod:`fedsilo.training.vectorized`)
keeps one optimizer state per party in stacked tensors, where a party whose steps are done
keeps its parameters and state. DP-SGD still builds a torch optimizer (Opacus wraps one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from fedsilo.training.local import LocalTrainConfig

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class Optimizer:
    """SGD or Adam over ``params`` (a model's tensors, or stacked ``(K, ...)`` tensors of K
    parties) as ``cfg`` says. Like torch.optim, a parameter without a gradient in a step is
    left alone, and its state starts with its first gradient."""

    def __init__(self, params: Sequence[torch.Tensor], cfg: LocalTrainConfig) -> None:
        self.params = list(params)
        self.cfg = cfg
        # per parameter: SGD's momentum buffer or Adam's first moment, Adam's second moment
        # and Adam's step count
        self.first: dict[int, torch.Tensor] = {}
        self.second: dict[int, torch.Tensor] = {}
        self.steps: dict[int, int] = {}

    def step(
        self, grads: Sequence[torch.Tensor | None], active: torch.Tensor | None = None
    ) -> None:
        """One step with this step's ``grads`` (overwritten: they must be the step's own).

        ``active`` (stacked parameters only): one flag per party; a party flagged False keeps
        its parameters and optimizer state. Parties stop in order of their step counts (once
        inactive, inactive for good), so the active ones share one step count.
        """
        cfg = self.cfg
        everyone = active is None or bool(active.all())
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
                if g is None:
                    continue
                on = None if everyone or active is None else active.view(-1, *[1] * (p.dim() - 1))
                if cfg.weight_decay:
                    g.add_(p, alpha=cfg.weight_decay)
                if cfg.optimizer == "adam":
                    self._adam(i, p, g, on)
                else:
                    self._sgd(i, p, g, on)

    def _sgd(self, i: int, p: torch.Tensor, g: torch.Tensor, on: torch.Tensor | None) -> None:
        cfg = self.cfg
        if cfg.momentum:
            if i not in self.first:  # the first buffer is the gradient itself
                self.first[i] = g.clone()
            elif on is None:
                self.first[i].mul_(cfg.momentum).add_(g, alpha=1)
            else:
                moved = self.first[i].mul(cfg.momentum).add_(g, alpha=1)
                self.first[i] = torch.where(on, moved, self.first[i])
            g = self.first[i]
        p.add_(g if on is None else torch.where(on, g, 0.0), alpha=-cfg.learning_rate)

    def _adam(self, i: int, p: torch.Tensor, g: torch.Tensor, on: torch.Tensor | None) -> None:
        beta1, beta2 = ADAM_BETAS
        if i not in self.first:
            self.first[i], self.second[i], self.steps[i] = (
                torch.zeros_like(p),
                torch.zeros_like(p),
                0,
            )
        self.steps[i] += 1
        m, v = self.first[i], self.second[i]
        if on is not None:  # update copies, then keep the finished parties' old moments
            m, v = m.clone(), v.clone()
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if on is not None:
            self.first[i] = m = torch.where(on, m, self.first[i])
            self.second[i] = v = torch.where(on, v, self.second[i])
        step = float(self.steps[i])  # torch keeps it in a float32 tensor and reads it back
        step_size = self.cfg.learning_rate / (1 - beta1**step)
        denom = (v.sqrt() / (1 - beta2**step) ** 0.5).add_(ADAM_EPS)
        p.addcdiv_(m if on is None else torch.where(on, m, 0.0), denom, value=-step_size)
