"""A guard classifier read from the policy's own activations: a linear probe, calibrated to a false-positive rate.

Following Anthropic's 2026 follow-up to Constitutional Classifiers (linear probes on the policy's activations, far
cheaper than a separate classifier), the features of a text are the policy's hidden states at chosen layers,
averaged over the tokens seen so far. Because the model is causal, one forward pass over prompt + response gives the
feature of every prefix at once (a running mean), so the streaming output guard costs one pass, not one per check.

- `prefix_features(model, ids, layers)`: (T, L*H) running-mean features of every prefix of `ids`;
- `train_probe(X, y)`: L2-regularised logistic regression on standardised features (full-batch L-BFGS, so the
  same data gives the same probe);
- `calibrate(scores_of_harmless, fpr)`: the threshold whose false-positive rate on a dev split is at most `fpr`;
- `Guard.score_prompt` (input guard) and `Guard.stream_scores` + `halt_position` (output guard: checked every
  `every` tokens, halting at the first check whose score crosses the threshold);
- `roc_auc` and `tpr_at_fpr`, the metrics the guard is judged by.

What it is not yet: the training data generated from the constitution with its augmentation families, the
sentence-embedding classifier it is to be compared with, the cascade, and `posttrain guard train|eval` (issue #11).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from posttrain.io import atomic_directory


@torch.no_grad()
def prefix_features(model, ids: list[int], layers: tuple[int, ...]) -> torch.Tensor:
    """(T, L*H) float32: at position t, the mean over tokens 0..t of the hidden states of each layer in `layers`."""
    out = model(torch.tensor([ids], device=next(model.parameters()).device), output_hidden_states=True)
    states_L_T_H = torch.stack([out.hidden_states[layer][0].float() for layer in layers])
    counts_T = torch.arange(1, len(ids) + 1, device=states_L_T_H.device, dtype=torch.float32)
    means_L_T_H = states_L_T_H.cumsum(dim=1) / counts_T[None, :, None]
    return means_L_T_H.permute(1, 0, 2).reshape(len(ids), -1).cpu()


@torch.no_grad()
def mean_features(model, ids_list: list[list[int]], layers: tuple[int, ...], batch_size: int = 16) -> torch.Tensor:
    """(N, L*H) float32: for each token list, the mean over all its tokens of each layer's hidden states, which is
    `prefix_features(model, ids, layers)[-1]`, computed in right-padded batches of similar lengths (a causal model's
    states of real tokens do not see the padding after them)."""
    device = next(model.parameters()).device
    order = sorted(range(len(ids_list)), key=lambda i: len(ids_list[i]))
    out = [None] * len(ids_list)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(ids_list[i]) for i in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, : len(ids_list[i])] = torch.tensor(ids_list[i])
            mask[row, : len(ids_list[i])] = 1
        hidden = model(ids.to(device), attention_mask=mask.to(device), output_hidden_states=True).hidden_states
        weights_B_T = (mask / mask.sum(1, keepdim=True)).to(device, torch.float32)
        means = torch.cat([torch.einsum("bt,bth->bh", weights_B_T, hidden[layer].float()) for layer in layers], 1)
        for row, i in enumerate(chunk):
            out[i] = means[row].cpu()
    return torch.stack(out) if out else torch.zeros(0, len(layers) * model.config.hidden_size)


@dataclass(frozen=True)
class Probe:
    """A logistic-regression probe on standardised features: score = sigmoid(w . (x - mean) / std + b)."""

    weight: torch.Tensor  # (D,)
    bias: torch.Tensor  # ()
    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)

    def scores(self, features_N_D: torch.Tensor) -> torch.Tensor:
        """(N,) harm probabilities."""
        return torch.sigmoid(((features_N_D - self.mean) / self.std) @ self.weight + self.bias)


def train_probe(features_N_D: torch.Tensor, labels_N: torch.Tensor, l2: float = 1e-2, steps: int = 200) -> Probe:
    """Fit the probe by full-batch L-BFGS on the mean logistic loss plus `l2` times the squared weight norm."""
    mean, std = features_N_D.mean(0), features_N_D.std(0).clamp(min=1e-6)
    x_N_D, y_N = ((features_N_D - mean) / std).double(), labels_N.double()
    weight = torch.zeros(x_N_D.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = x_N_D @ weight + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y_N) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return Probe(weight.detach().float(), bias.detach().float(), mean, std)


def calibrate(harmless_scores: torch.Tensor, fpr: float) -> float:
    """The smallest threshold at which at most a fraction `fpr` of the harmless dev scores lie strictly above it."""
    ordered = torch.sort(harmless_scores.double(), descending=True).values
    allowed = int(fpr * len(ordered))  # scores strictly above the threshold that are allowed to be false positives
    return float(ordered[allowed]) if allowed < len(ordered) else float(ordered[-1]) - 1e-12


def halt_position(scores_T: torch.Tensor, threshold: float, start: int, every: int) -> int | None:
    """The first checked position (start + every - 1, start + 2*every - 1, ...; and the last) whose score exceeds
    `threshold`: the response is cut after that token. None when the stream never crosses it."""
    last = len(scores_T) - 1
    checks = [*range(start + every - 1, last + 1, every), last] if last >= start else []
    return next((t for t in dict.fromkeys(checks) if scores_T[t] > threshold), None)


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Probability that a random harmful example scores above a random harmless one (ties count half)."""
    positives, negatives = scores[labels.bool()].double(), scores[~labels.bool()].double()
    above = (positives[:, None] > negatives[None, :]).double() + 0.5 * (
        positives[:, None] == negatives[None, :]
    ).double()
    return float(above.mean())


def tpr_at_fpr(scores: torch.Tensor, labels: torch.Tensor, fpr: float) -> float:
    """The share of harmful examples above the threshold calibrated on these harmless ones to `fpr`."""
    threshold = calibrate(scores[~labels.bool()], fpr)
    return float((scores[labels.bool()] > threshold).double().mean())


@dataclass(frozen=True)
class Guard:
    """A calibrated probe on chosen layers of a policy; `every` is the streaming check interval in tokens."""

    probe: Probe
    layers: tuple[int, ...]
    threshold: float
    every: int = 8

    def score_prompt(self, model, ids: list[int]) -> float:
        """The input guard's harm probability for a rendered prompt (the mean over all its tokens)."""
        return float(self.probe.scores(prefix_features(model, ids, self.layers)[-1:])[0])

    def stream_scores(self, model, prompt_ids: list[int], response_ids: list[int]) -> torch.Tensor:
        """(len(response_ids),) harm probabilities after each response token, the prompt included in the mean."""
        features = prefix_features(model, prompt_ids + response_ids, self.layers)
        return self.probe.scores(features[len(prompt_ids) :])

    def halt(self, model, prompt_ids: list[int], response_ids: list[int]) -> int | None:
        """Where the streaming guard cuts the response (the index of the last token kept), or None."""
        return halt_position(self.stream_scores(model, prompt_ids, response_ids), self.threshold, 0, self.every)

    def save(self, path: Path) -> Path:
        """Write the guard to a directory atomically: probe tensors in safetensors, the rest in guard.json."""
        with atomic_directory(Path(path)) as tmp:
            save_file(
                {k: getattr(self.probe, k).contiguous() for k in ("weight", "bias", "mean", "std")},
                tmp / "probe.safetensors",
            )
            settings = {"layers": list(self.layers), "threshold": self.threshold, "every": self.every}
            (tmp / "guard.json").write_text(json.dumps(settings, indent=2) + "\n")
        return Path(path)


def load_guard(path: Path) -> Guard:
    """A guard written by `Guard.save`; a clear error for a directory without one."""
    if not (Path(path) / "guard.json").is_file():
        raise FileNotFoundError(f"{path} is not a guard directory: no guard.json (`posttrain guard` writes one)")
    tensors = load_file(Path(path) / "probe.safetensors")
    settings = json.loads((Path(path) / "guard.json").read_text())
    probe = Probe(tensors["weight"], tensors["bias"], tensors["mean"], tensors["std"])
    return Guard(probe, tuple(settings["layers"]), settings["threshold"], settings["every"])
