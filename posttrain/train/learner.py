"""What an RL stage trains and how one step's scored rollouts update it: the seam between the stage and its algorithm.

The GRPO family learns from group advantages with the policy alone; PPO also trains a critic
(`posttrain.train.ppo_update`). Either way the stage's loop sees one module to checkpoint (the policy, or the policy
with its critic), one optimizer and schedule, an `update` per step and a `save` for what goes beside `final/`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from posttrain.types import Rollout

Update = Callable[[list[Rollout], torch.Tensor, int], dict[str, float]]  # (rollouts, rewards_P_G, step) -> metrics


@dataclass(frozen=True)
class Learner:
    """The trained module (as the shared loop checkpoints it), its optimizer and schedule, and how it learns."""

    module: torch.nn.Module  # the policy, or the policy and its critic: everything a resumed run must restore
    optimizer: torch.optim.Optimizer
    scheduler: Any
    update: Update  # rollouts in group order (P groups of G), their rewards (P, G), the step index
    save: Callable[[Path], Any] = lambda run_dir: None  # writes what the learner adds beside final/ (final_critic/)
