"""Axolotl's KD plugin, plus the two loss terms in the training log.

Axolotl 0.19's KD trainer logs only ``loss`` = kd_alpha * T^2 * KL + kd_ce_alpha * CE (per label token). This
plugin is ``axolotl.integrations.kd.KDPlugin`` with a trainer that also logs ``kd_loss`` (the soft term, T^2 *
KL(teacher top-k || student)) and ``ce_loss`` (the hard term, cross-entropy on the teacher's text), both per
label token, so a run shows whether the student is learning the teacher's distribution or only its text.

The terms are recomputed without gradients from the hidden states the trainer already has, with Axolotl's own
distillation loss function, a chunk of positions at a time (one extra [chunk x vocabulary] product per chunk);
the gradient still comes from Axolotl's fused loss. Use it in a recipe as ``plugins: [kd_terms.KDTermsPlugin]``
with this folder on PYTHONPATH (scripts/train.sh does that for Axolotl).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from axolotl.integrations.kd import KDPlugin
from axolotl.integrations.kd.kernels.liger import LigerFusedLinearKLTopKLogprobFunction
from axolotl.integrations.kd.trainer import AxolotlKDTrainer
from torch import Tensor

CHUNK = 256  # positions per recomputation: bounds the extra memory to CHUNK x vocabulary floats


class _LoggedLoss(torch.nn.Module):
    """Calls the trainer's fused KD loss unchanged, then stores its two terms as training metrics."""

    def __init__(self, inner: torch.nn.Module, trainer: AxolotlKDTrainer) -> None:
        super().__init__()
        self.inner = inner
        self.trainer = trainer

    def forward(
        self, weight: Tensor, hidden: Tensor, token_ids: Tensor, logprobs: Tensor, mask: Tensor, true_labels: Tensor
    ) -> Tensor:
        loss = self.inner(weight, hidden, token_ids, logprobs, mask, true_labels=true_labels)
        with torch.no_grad():
            kd, ce = self._terms(weight, hidden, token_ids, logprobs, mask, true_labels)
        tokens = max(int((true_labels != -100).sum()), 1)  # the trainer's own divisor
        self.trainer.store_metrics({"kd_loss": kd / tokens, "ce_loss": ce / tokens}, train_eval="train")
        return loss

    def _terms(
        self, weight: Tensor, hidden: Tensor, token_ids: Tensor, logprobs: Tensor, mask: Tensor, true_labels: Tensor
    ) -> tuple[float, float]:
        args = self.trainer.args
        temperature, beta = float(args.kd_temperature), float(args.kd_beta or 0.0)
        k = token_ids.shape[-1]
        shifted = F.pad(true_labels, (0, 1), value=-100)[:, 1:].reshape(-1)  # as the fused loss shifts them
        flat = hidden.reshape(-1, hidden.shape[-1])
        ids, lps, valid = token_ids.reshape(-1, k), logprobs.reshape(-1, k), mask.reshape(-1, k)
        kd = ce = 0.0
        for start in range(0, flat.shape[0], CHUNK):
            part = slice(start, start + CHUNK)
            logits = F.linear(flat[part], weight).float()
            ce += float(F.cross_entropy(logits, shifted[part], reduction="sum", ignore_index=-100))
            kd += float(
                LigerFusedLinearKLTopKLogprobFunction.distillation_loss_fn(
                    logits / temperature,
                    ids[part],
                    lps[part],
                    valid[part],
                    beta=beta,
                    normalize_topk=bool(args.kd_normalize_topk),
                )
            )
        return kd * temperature**2, ce


class KDTermsTrainer(AxolotlKDTrainer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kd_loss_fn = _LoggedLoss(self._kd_loss_fn, self)


class KDTermsPlugin(KDPlugin):
    """``KDPlugin`` (every ``kd_*`` key works the same) whose trainer logs ``kd_loss`` and ``ce_loss``."""

    def get_trainer_cls(self, cfg: Any) -> type[AxolotlKDTrainer] | None:
        return KDTermsTrainer if cfg.kd_trainer else None
