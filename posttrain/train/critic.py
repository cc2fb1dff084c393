"""PPO's critic: a separate value model, a causal LM's decoder with a scalar head, V(prefix) at every position.

Why a separate model and not a value head on the policy: the critic's regression gradients then never move the
policy's weights (with a shared trunk, `vf_coef` trades the two losses against each other and a fresh head's large
errors disturb the policy early on); it can have its own learning rate, typically higher than the policy's; and it
can start from another model (a reward model, a previous run's `final_critic/`). This is TRL's `PPOTrainer` (a
separate `value_model`), InstructGPT's and OpenRLHF's choice. The cost is a second backbone in memory.

The head is a linear layer on the decoder's last hidden state, zero-initialised: V = 0 everywhere at the start, so
the first step's advantages are the plain (whitened) rewards-to-go rather than the noise of a random head. Its
backbone is the `critic_model` spec (default: the policy's starting model), loaded as the policy is (LoRA and
gradient checkpointing as configured). The LM's output projection is unused and frozen (unless tied to the input
embeddings), so it is neither trained nor checkpointed.

`save_critic` writes an HF causal-LM directory (LoRA merged) plus `value_head.safetensors`; `load_critic` on such a
directory reads its head back, so a critic can be carried from one PPO run to the next.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from posttrain.io import atomic_directory
from posttrain.logprobs import packed_attention_mask, target_mask
from posttrain.models import LoraSpec, merged_copy, resolve_model_dir
from posttrain.packing import PackedBatch
from posttrain.train.setup import build_policy

HEAD_FILE = "value_head.safetensors"


class ValueModel(torch.nn.Module):
    """A causal LM (only its decoder is run) and a scalar value head on its last hidden state."""

    def __init__(self, lm: torch.nn.Module, head: torch.nn.Linear):
        super().__init__()
        self.lm = lm
        self.head = head


def load_critic(
    spec: str, device: torch.device, seed: int, lora: LoraSpec | None = None, gradient_checkpointing: bool = False
):
    """(critic, tokenizer) in train mode on `device`: `spec`'s decoder and a zero head, or the head saved with it."""
    lm, tokenizer = build_policy(spec, device, seed, lora, gradient_checkpointing)
    output, embeddings = lm.get_output_embeddings(), lm.get_input_embeddings()
    if output is not None and output.weight is not embeddings.weight:
        output.requires_grad_(False)
    head = torch.nn.Linear(lm.config.hidden_size, 1, device=device)
    saved = resolve_model_dir(spec) / HEAD_FILE
    with torch.no_grad():
        if saved.is_file():
            head.load_state_dict(load_file(saved))
        else:
            head.weight.zero_()
            head.bias.zero_()
    return ValueModel(lm, head).train(), tokenizer


def token_values(critic: ValueModel, batch: PackedBatch) -> torch.Tensor:
    """(B, T) V(s_t) for every target slot t, read at its predecessor's slot (where the policy's logits predicting t
    are read, `posttrain.logprobs`); 0 elsewhere."""
    rows, cols = target_mask(batch).nonzero(as_tuple=True)  # (N,) each
    lm = critic.lm
    mask = packed_attention_mask(lm, batch)
    hidden_B_T_H = lm.get_decoder()(
        input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=mask, use_cache=False
    ).last_hidden_state
    values_N = critic.head(hidden_B_T_H[rows, batch.prev_slot[rows, cols]]).squeeze(-1).float()
    return values_N.new_zeros(batch.input_ids.shape).index_put((rows, cols), values_N)


def save_critic(critic: ValueModel, tokenizer, path: str | Path) -> Path:
    """Write the critic as an HF directory (LoRA merged) plus its head; atomic: temp dir, then rename."""
    with atomic_directory(Path(path)) as tmp:
        merged_copy(critic.lm).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        save_file({k: v.detach().contiguous().cpu() for k, v in critic.head.state_dict().items()}, tmp / HEAD_FILE)
    return Path(path)
