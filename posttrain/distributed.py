"""Training on several processes: torch.distributed's DDP or FSDP2 under torchrun, nothing home-made.

    torchrun --nproc_per_node=4 -m posttrain sft --config sft.yaml parallel=fsdp2

Every rank loads the same model with the same seed and reads the same data; the shared loop hands every rank the
whole step's micro-batches and each rank trains on its share (`share`: micro-batches rank, rank + N, ...), so the
global batch is the one a single process with the same `grad_accum` trains on. A rank short of micro-batches
runs a copy of one with zero weight: DDP and FSDP2 need every rank to make the same collective calls. A stage's
loss is already normalised by the whole step's totals (tokens, sequences), so the ranks' gradients must add up;
DDP and FSDP2 average them, hence `loss_scale` (the world size). Metrics summed over micro-batches are summed over
ranks (`all_reduce_sums`), and only the main rank writes files (`is_main`).

- `ddp`: `DistributedDataParallel` around the model. The log-prob bridge then calls the wrapper (`forward_module`),
  never the model's decoder directly, since DDP arms its gradient hooks in its own forward.
- `fsdp2`: `fully_shard` on each decoder block and on the whole model, bf16 parameters in compute when the run is
  bf16 (`MixedPrecisionPolicy`, fp32 gradient reduction). Generation needs whole weights without collectives (ranks
  sample different prompts for different lengths), so a sampler gets a plain copy of the model, built when first
  asked for and refreshed from the shards after each update (`generation_copy`), as colocated rollout engines hold
  one.

Checkpoints of a parallel run go through `torch.distributed.checkpoint` (`posttrain.train.checkpoint`), which
reshards on load: a run resumes on the same or another number of ranks.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


_joined = False  # set by `start`: others start process groups too (vLLM's in-process engine starts one of its own)


def is_initialized() -> bool:
    """Whether this process trains as one rank of a torchrun job (joined through `start`)."""
    return _joined and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes the run's files (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def local_device() -> torch.device:
    """This rank's GPU (torchrun's LOCAL_RANK) when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def start(parallel: str) -> None:
    """Join torchrun's process group when `parallel` asks for it (NCCL on GPUs, gloo on CPUs). A torchrun launch with
    `parallel=none` is refused: every rank would train alone and write the same files."""
    if parallel not in WRAPPERS:
        raise ValueError(f"parallel must be one of {', '.join(WRAPPERS)}, got {parallel!r}")
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if parallel == "none":
        if launched > 1:
            raise ValueError(f"launched on {launched} ranks with parallel=none: set parallel=ddp or parallel=fsdp2")
        return
    if "RANK" not in os.environ:
        raise ValueError(f"parallel={parallel} runs under torchrun: torchrun --nproc_per_node=N -m posttrain ...")
    global _joined
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_device())
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    _joined = True


_GENERATION_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # sharded model -> its plain copy


def _no_wrap(model, precision: str):
    return model


def _ddp(model, precision: str):
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    # buffers (RoPE's inverse frequencies) are the same on every rank; syncing them at each forward would make every
    # forward, evaluation included, a collective call (the flag's name changed in torch 2.13)
    new_flag = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    no_buffer_sync = {"forward_sync_buffers" if new_flag else "broadcast_buffers": False}
    wrapper = DistributedDataParallel(model, device_ids=ids, **no_buffer_sync)
    object.__setattr__(model, "_posttrain_ddp", _Wrapper(wrapper))  # not a submodule; freed with the model
    return model


class _Wrapper:
    """Holds a model's DDP wrapper. A copy of the model (a frozen reference, a LoRA merge) gets none: it is not the
    model DDP reduces gradients for."""

    def __init__(self, ddp) -> None:
        self.ddp = ddp

    def __deepcopy__(self, memo) -> None:
        return None


def _fsdp2(model, precision: str):
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if hasattr(model, "peft_config"):
        raise NotImplementedError("parallel=fsdp2 trains full weights; for LoRA use parallel=ddp")
    bf16 = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    policy = bf16 if precision == "bf16" else MixedPrecisionPolicy()
    for block in model.get_decoder().layers:
        fully_shard(block, mp_policy=policy)
    # the root too reshards after each forward: FSDP2 leaves its weights whole until the backward otherwise, and after
    # a forward without one (a reference pass, an evaluation) `model.parameters()` would hand out the whole copies
    fully_shard(model, mp_policy=policy, reshard_after_forward=True)
    return model


WRAPPERS: dict[str, Callable] = {"none": _no_wrap, "ddp": _ddp, "fsdp2": _fsdp2}  # parallel -> wrap(model, precision)


def single_process_only(config, what: str) -> None:
    """Refuse `parallel` for what has not been made to run on several ranks yet."""
    if config.parallel != "none":
        raise NotImplementedError(f"{what} runs in one process for now: parallel={config.parallel} covers sft, "
                                  "offline preference and rlvr (not ppo)")  # fmt: skip


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def forward_module(model) -> torch.nn.Module | None:
    """What a training forward must call for the parallel engine to see it (the DDP wrapper, or the sharded model
    itself, whose own hooks gather its weights); None for a model trained in one process."""
    wrapper = _ddp_wrapper(model)
    if wrapper is not None:
        return wrapper
    return model if is_sharded(model) else None


def _ddp_wrapper(model):
    holder = model.__dict__.get("_posttrain_ddp")
    return holder.ddp if holder is not None else None


def generation_copy(model):
    """The model samplers generate from: `model` itself, or for a sharded model a plain copy with its whole weights,
    built on first use (every rank calls this together: the weights are gathered) and kept up to date by
    `refresh_generation_copy`. SFT and DPO never ask for one until they save the final model."""
    if not is_sharded(model):
        return model
    if model not in _GENERATION_COPIES:
        from transformers import AutoModelForCausalLM

        config = model.config
        plain = AutoModelForCausalLM.from_config(config, attn_implementation=config._attn_implementation)
        _GENERATION_COPIES[model] = plain.to(local_device()).eval().requires_grad_(False)
        refresh_generation_copy(model)
    return _GENERATION_COPIES[model]


def refresh_generation_copy(model) -> None:
    """Copy a sharded model's current weights into its generation copy (every rank calls this together)."""
    plain = _GENERATION_COPIES.get(model)
    if plain is None:
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    plain.load_state_dict(full)


def share(items: Sequence[T]) -> list[tuple[T, float]]:
    """This rank's (item, weight) pairs: items rank, rank + N, ... with weight 1, padded with zero-weight copies of
    the first item to ceil(len / N), the same count on every rank."""
    n, r = world_size(), rank()
    mine = [(item, 1.0) for item in items[r::n]]
    return mine + [(items[0], 0.0)] * (-(-len(items) // n) - len(mine))


def loss_scale() -> float:
    """What each rank's loss is multiplied by so that the engines' gradient average is the sum over ranks."""
    return float(world_size())


@contextlib.contextmanager
def gradient_sync(model, enabled: bool) -> Iterator[None]:
    """Let the backward passes inside reduce gradients across ranks only when `enabled` (the step's last
    micro-batch): the others accumulate locally."""
    wrapper = _ddp_wrapper(model)
    if wrapper is not None and not enabled:
        with wrapper.no_sync():
            yield
        return
    if is_sharded(model):
        model.set_requires_gradient_sync(enabled)
    yield


def all_reduce_sums(values: dict[str, float]) -> dict[str, float]:
    """Each key's sum over ranks (every rank passes the same keys)."""
    if not is_initialized() or not values:
        return values
    keys = sorted(values)
    totals = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=local_device())  # NCCL: GPU
    dist.all_reduce(totals)
    return dict(zip(keys, totals.tolist(), strict=True))


def gather_lists(items: list[Any]) -> list[list[Any]]:
    """Every rank's list, in rank order (picklable items)."""
    if not is_initialized():
        return [items]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, items)
    return out


def sharded_map(fn: Callable[[list[T]], list], items: Sequence[T]) -> list:
    """`fn` over this rank's share of `items` (rank, rank + N, ...), the results of every rank gathered back into
    the order of `items`. `fn` must give one result per item."""
    n, r = world_size(), rank()
    if n == 1:
        return fn(list(items))
    mine = fn(list(items[r::n]))
    out: list[Any] = [None] * len(items)
    for source, results in enumerate(gather_lists(mine)):
        out[source::n] = results
    return out
