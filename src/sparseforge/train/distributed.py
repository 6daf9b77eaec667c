"""Data-parallel training of one network over several processes (DistributedDataParallel, gloo on CPU).

A thin wrapper around :func:`sparseforge.train.fit`, which stays the only training loop:

* :func:`init_from_env` joins the process group that ``torchrun`` describes in the environment
  (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``);
* :func:`fit_distributed` gives every rank a :class:`~sparseforge.data.DataSplits` whose train split
  is that rank's shard, and a :class:`ShardCallback` that re-deals the shards at the start of every
  epoch from one global permutation seeded by ``(seed, epoch)`` (DistributedSampler semantics: each
  epoch every rank sees a fresh ``1/world`` of the data, the shards together cover it once); the
  per-rank batch is ``batch_size / world``, so one step averages gradients over the same global batch
  size as one process. The model is wrapped in DDP (its parameters, SparseLinear's per-edge values
  included, are ordinary ``nn.Parameter``s; gradients are averaged by all-reduce);
* train loss/accuracy are all-reduced (sample-weighted means), epoch time is the slowest rank's;
  validation and test are evaluated on every rank (same weights, same numbers);
* only rank 0 writes the run directory; other ranks checkpoint to a private temporary directory (a
  copy of rank 0's checkpoint on resume), so resume works on every rank.

The command line's door to it is ``sparseforge train`` (every option, config files, resume): run it under
``torchrun --nproc-per-node N -m sparseforge train ...`` (multi-node through torchrun's rendezvous), or
let it launch itself with ``sparseforge train --nproc N``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data import ArrayDataset, DataSplits
from .loop import CHECKPOINT, Callback, TrainConfig, TrainState, fit


def init_from_env(backend: str = "gloo") -> tuple[int, int]:
    """Join (or reuse) the default process group from torchrun's environment; returns ``(rank, world)``.
    Without ``WORLD_SIZE`` in the environment, a single process: ``(0, 1)`` and no group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    dist.init_process_group(backend=backend, rank=int(os.environ["RANK"]), world_size=world)
    return dist.get_rank(), world


def shard_indices(n: int, rank: int, world: int, seed: int, epoch: int) -> torch.Tensor:
    """Rank ``rank``'s ``n // world`` sample indices for ``epoch``: a slice of one global permutation
    seeded by ``(seed, epoch)`` (the remainder ``n % world`` is left out of that epoch)."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch + 7_919)
    perm = torch.randperm(n, generator=gen)
    per = n // world
    return perm[rank * per:(rank + 1) * per]


class ShardCallback(Callback):
    """Re-deals this rank's shard of the training split every epoch (in place, so :func:`fit` sees it),
    and all-reduces the epoch's train metrics."""

    def __init__(self, full: ArrayDataset, shard: ArrayDataset, rank: int, world: int, seed: int) -> None:
        self.full, self.shard, self.rank, self.world, self.seed = full, shard, rank, world, seed

    def on_epoch_begin(self, state: TrainState) -> None:
        idx = shard_indices(len(self.full), self.rank, self.world, self.seed, state.epoch)
        self.shard.x.copy_(self.full.x[idx])
        self.shard.y.copy_(self.full.y[idx])

    def on_epoch_end(self, state: TrainState) -> None:
        if self.world == 1:
            return
        m = state.metrics
        n = float(len(self.shard))
        t = torch.tensor([m["train_loss"] * n, m["train_acc"] * n, n], dtype=torch.float64)
        dist.all_reduce(t)
        m["train_loss"], m["train_acc"] = float(t[0] / t[2]), float(t[1] / t[2])
        et = torch.tensor([m["epoch_time_s"]], dtype=torch.float64)
        dist.all_reduce(et, op=dist.ReduceOp.MAX)
        m["epoch_time_s"] = float(et[0])
        m["world_size"] = self.world


class DDP(DistributedDataParallel):
    """DistributedDataParallel that keeps the wrapped model's face: ``state_dict`` without the
    ``module.`` prefix (checkpoints interchangeable with single-process runs), ``num_parameters`` and
    ``flops_per_sample`` forwarded."""

    def state_dict(self, *args: Any, **kwargs: Any) -> dict:  # type: ignore[override]
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)

    def num_parameters(self) -> int:
        fn = getattr(self.module, "num_parameters", None)
        return int(fn()) if callable(fn) else sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    def flops_per_sample(self) -> int | None:
        fn = getattr(self.module, "flops_per_sample", None)
        return int(fn()) if callable(fn) else None


def fit_distributed(model: nn.Module, data: DataSplits, config: TrainConfig, *,
                    callbacks: Iterable[Callback] = (), run_dir: str | os.PathLike | None = None,
                    resume: bool = False, settings: Any = None) -> TrainState:
    """:func:`fit` on this rank's shard with the model wrapped in DDP (needs an initialised process group,
    see :func:`init_from_env`; with world size 1 it is plain :func:`fit`).

    ``config.batch_size`` is the global batch: each rank takes ``batch_size // world`` (at least 1).
    Every rank must build ``model`` identically (DDP also broadcasts rank 0's parameters at wrap time).
    Returns this rank's state (``state.model`` is the DDP wrapper; ``.module`` is the model). ``settings``
    goes to :func:`fit` (hashed into the checkpoint).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return fit(model, data, config, callbacks=callbacks, run_dir=run_dir, resume=resume, settings=settings)
    rank, world = dist.get_rank(), dist.get_world_size()
    full = data.train
    per = len(full) // world
    if per == 0:
        raise ValueError(f"{len(full)} training samples cannot be shared by {world} ranks")
    shard = ArrayDataset(full.x[:per].clone(), full.y[:per].clone())
    local = DataSplits(data.name, shard, data.val, data.test, data.n_classes, data.sample_shape)
    cfg = replace(config, batch_size=max(config.batch_size // world, 1))
    ddp = DDP(model)
    cbs = [ShardCallback(full, shard, rank, world, config.seed), *callbacks]
    if rank == 0:
        return fit(ddp, local, cfg, callbacks=cbs, run_dir=run_dir, resume=resume, settings=settings)
    tmp = Path(tempfile.mkdtemp(prefix=f"sparseforge-rank{rank}-"))
    try:
        if resume and run_dir is not None and (Path(run_dir) / CHECKPOINT).exists():
            shutil.copy2(Path(run_dir) / CHECKPOINT, tmp / CHECKPOINT)
        return fit(ddp, local, cfg, callbacks=cbs, run_dir=tmp if run_dir is not None else None, resume=resume,
                   settings=settings)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parameter_checksums(model: nn.Module) -> torch.Tensor:
    """``[n_params]`` float64 sums of every parameter (compare across ranks)."""
    m = model.module if isinstance(model, DistributedDataParallel) else model
    return torch.stack([p.detach().double().sum() for p in m.parameters()])


def ranks_agree(model: nn.Module, atol: float = 0.0) -> bool:
    """True when every rank holds the same parameters (checksums gathered and compared)."""
    if not (dist.is_available() and dist.is_initialized()):
        return True
    mine = parameter_checksums(model)
    allv = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(allv, mine)
    return all(torch.allclose(a, allv[0], atol=atol, rtol=0) for a in allv)


def run_mlp(*, dataset: str = "digits", net: Sequence[int] | None = None, density: float | Sequence[float] = 1.0,
            epochs: int = 5, batch_size: int = 64, lr: float = 5e-3, seed: int = 0, limit: int | None = None,
            run_dir: str | os.PathLike | None = None, resume: bool = False, threads: int = 1) -> dict:
    """Train a pre-defined sparse MLP with :func:`fit_distributed` (one call per rank). Returns
    rank-independent results: test/val accuracy, parameters, whether ranks agree, world size."""
    from ..data import load_dataset
    from ..nn import SparseMLP
    from ..topology import design

    torch.set_num_threads(threads)
    rank, world = init_from_env()
    data = load_dataset(dataset, seed=seed, limit=limit)
    sizes = tuple(net) if net else (data.n_features, 32, data.n_classes)
    if sizes[0] != data.n_features or sizes[-1] != data.n_classes:
        raise ValueError(f"net={list(sizes)} does not fit {dataset}: needs {data.n_features} inputs and "
                         f"{data.n_classes} outputs")
    torch.manual_seed(seed)
    model = SparseMLP(design(sizes, density=density, seed=seed))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    state = fit_distributed(model, data, cfg, run_dir=run_dir, resume=resume)
    agree = ranks_agree(state.model)
    m = state.metrics
    return dict(rank=rank, world=world, test_acc=m["test_acc"], val_acc=m["val_acc"], train_loss=m["train_loss"],
                params=m["params"], ranks_agree=agree, epochs=m["epoch"],
                checksum=float(parameter_checksums(state.model).sum()))


def _spawned(rank: int, world: int, port: int, kwargs: dict, queue: Any) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    try:
        queue.put(run_mlp(**kwargs))
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def run_local(world: int, **kwargs: Any) -> list[dict]:
    """:func:`run_mlp` on ``world`` local processes (spawned, gloo over loopback, like ``torchrun
    --standalone``); returns every rank's result, by rank. Only rank 0 writes ``run_dir``."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_spawned, args=(r, world, port, kwargs, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = []
    try:
        for _ in procs:
            results.append(queue.get(timeout=600))
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"distributed ranks exited with {[p.exitcode for p in procs]}")
    return sorted(results, key=lambda r: r["rank"])
