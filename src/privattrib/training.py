"""The one classifier-training loop of privattrib, shared by attribution (label = source) and
re-identification (label = identity).

Speed by design (DESIGN.md §4): the uint8 images move to the device once when they fit (a quarter
of the free accelerator memory at most; otherwise batches are gathered on the host and copied),
every epoch's permutation and flip mask is drawn once on the host from a seeded generator and
moved in one copy, batches are indexed on the device, flips and the uint8 -> [-1, 1] scaling
happen on the device, and on CUDA the step runs under bf16 autocast with channels_last tensors
(optionally ``torch.compile``). Loss and accuracy are accumulated on the device and read once per
epoch, so the loop never waits for the GPU inside an epoch.

Several processes (``torchrun``, see :mod:`privattrib.distributed`): when a process group of more
than one process is initialised, the same loop runs under DistributedDataParallel. Every rank
draws the same seeded permutation and flips; each global batch of ``batch_size`` images is split
between the ranks (rank r takes positions r, r + W, ...), so every image is seen exactly once per
epoch, and each rank's summed loss is scaled by W / (global batch) so that DDP's gradient average
is exactly the one-process gradient of the global batch. Loss and accuracy are all-reduced once
per epoch; each rank validates its share of the validation set (after taking rank 0's buffers) and
the sums are all-reduced, so every rank returns the same history and (``keep_best``) the same weights.

Example::

    from privattrib.attribution.models import make_classifier
    from privattrib.training import TrainConfig, predict, train_classifier

    model = make_classifier("yu2019", num_classes=5, image_size=64, seed=0)
    result = train_classifier(model, train_images, train_labels, TrainConfig(epochs=10),
                              val=(val_images, val_labels))
    logits = predict(result.model, test_images)          # numpy N x K, float32
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from privattrib.common import ProgressBar, resolve_device
from privattrib.threads import fit_threads

__all__ = ["TrainConfig", "TrainResult", "BatchTransform", "train_classifier", "predict", "evaluate_logits", "as_uint8_tensor"]

_DEVICE_FRACTION = 0.25  # images go to the GPU when they need at most this share of free memory


@dataclass(frozen=True)
class TrainConfig:
    """Options of :func:`train_classifier`. Defaults follow Yu et al. 2019 (Adam, beta1 = 0,
    beta2 = 0.99, lr 1e-3, batch 32, horizontal flips).

    Attributes:
        epochs: passes over the training set (>= 1).
        batch_size: images per step (>= 1).
        lr: Adam learning rate (> 0).
        betas: Adam (beta1, beta2), each in [0, 1).
        eps: Adam epsilon.
        weight_decay: L2 penalty added by Adam (>= 0).
        hflip: random horizontal flips (one independent coin per image and epoch).
        seed: seeds the shuffling and flips (the weights are seeded by ``make_classifier(seed=)``).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:1"``, ...
        amp: ``"auto"`` (bf16 on CUDA, off on CPU), ``"bf16"``/``True``, ``"off"``/``False``.
        channels_last: ``"auto"`` (on CUDA), ``True`` or ``False``.
        compile: wrap the training forward pass in ``torch.compile``.
        compile_mode: ``torch.compile`` mode: ``"default"``, ``"reduce-overhead"`` (CUDA graphs),
            ``"max-autotune"`` or ``"max-autotune-no-cudagraphs"``.
        eval_batch_size: batch size of validation passes.
        keep_best: return the weights of the epoch with the best validation accuracy (needs ``val``).
        fit_statistics: models with a ``fit_statistics(images)`` method (e.g. ``dct``) get it
            called on the training images: ``"auto"`` when not fitted yet (so fine-tuning keeps
            the statistics of the first training), ``True`` always, ``False`` never.
        data_on_device: ``"auto"`` (when it fits), ``True`` (always) or ``False`` (gather per batch
            on the host).
        distributed: ``"auto"`` (DistributedDataParallel when a process group of more than one
            process is initialised, e.g. under ``torchrun``), ``True`` (require one) or ``False``.
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    weight_decay: float = 0.0
    hflip: bool = True
    seed: int = 0
    device: str = "auto"
    amp: str | bool = "auto"
    channels_last: str | bool = "auto"
    compile: bool = False
    compile_mode: str = "default"
    eval_batch_size: int = 512
    keep_best: bool = False
    fit_statistics: str | bool = "auto"
    data_on_device: str | bool = "auto"
    distributed: str | bool = "auto"

    def __post_init__(self) -> None:
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if int(self.eval_batch_size) < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.amp not in ("auto", "bf16", "off", True, False):
            raise ValueError(f"amp must be 'auto', 'bf16', 'off', True or False, got {self.amp!r}")
        modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
        if self.compile_mode not in modes:
            raise ValueError(f"compile_mode must be one of {', '.join(modes)}, got {self.compile_mode!r}")
        for name in ("channels_last", "fit_statistics", "data_on_device", "distributed"):
            if getattr(self, name) not in ("auto", True, False):
                raise ValueError(f"{name} must be 'auto', True or False, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class TrainResult:
    """What :func:`train_classifier` returns.

    Attributes:
        model: the trained module (on the training device; the uncompiled module).
        history: one dict per epoch: ``epoch, loss, accuracy, seconds, images_per_second`` and,
            with validation data, ``val_loss, val_accuracy``.
        config: the resolved options (``TrainConfig`` fields plus ``resolved_device``,
            ``resolved_amp``, ``resolved_channels_last``, ``resolved_data_on_device``).
        seconds: wall time of the whole call.
        best_epoch: the epoch whose weights were returned (the last one unless ``keep_best``).
    """

    model: nn.Module
    history: list[dict[str, float]]
    config: dict[str, Any]
    seconds: float
    best_epoch: int = field(default=0)


def as_uint8_tensor(images: np.ndarray | torch.Tensor, what: str = "images") -> torch.Tensor:
    """uint8 N x C x H x W numpy array or tensor -> tensor, without a copy where possible.

    Read-only arrays (memory maps of the cache) are wrapped without a copy; nothing here writes
    into them.
    """
    if isinstance(images, np.ndarray):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            images = torch.from_numpy(np.ascontiguousarray(images))
    elif not isinstance(images, torch.Tensor):
        raise ValueError(f"{what} must be a numpy array or a torch tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"{what} must be uint8 N x C x H x W, got {images.dtype} {tuple(images.shape)}")
    return images


def _as_labels(labels: Any, n: int) -> torch.Tensor:
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"labels must be a vector of {n} class indices, got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    labels = labels.long()
    if n and int(labels.min()) < 0:
        raise ValueError("labels must be >= 0")
    return labels


def _resolve_amp(amp: str | bool, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if amp in ("bf16", True):
        return torch.bfloat16
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _fits_on_device(nbytes: int, device: torch.device) -> bool:
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= _DEVICE_FRACTION * free


def _to_input(batch_u8: torch.Tensor, flip: torch.Tensor | None, channels_last: bool) -> torch.Tensor:
    """uint8 B x C x H x W on the device -> float in [-1, 1], flipped where ``flip`` is True."""
    if flip is not None:
        batch_u8 = torch.where(flip[:, None, None, None], batch_u8.flip(-1), batch_u8)
    if channels_last:  # reorder the 1-byte tensor, not the 4-byte one; float() keeps the layout
        batch_u8 = batch_u8.contiguous(memory_format=torch.channels_last)
    return batch_u8.float().mul_(1.0 / 127.5).sub_(1.0)


def _gather(images: torch.Tensor, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``index`` of ``images`` on ``device`` (index on the images' device)."""
    if images.device == device:  # device comes from resolve_device: cuda:N, never a bare cuda
        return images.index_select(0, index)
    batch = images.index_select(0, index.cpu())
    if device.type == "cuda":
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True)


#: ``batch_transform(batch, labels, index, epoch, model) -> batch``: called on every training batch
#: before flips and scaling. ``batch`` is uint8 B x C x H x W on the training device, ``index`` the
#: batch's rows in the training set (on the device of the images), ``epoch`` counts from 1 and
#: ``model`` is the model being trained (in train mode). It returns a uint8 batch of the same shape:
#: e.g. noise drawn afresh every epoch, or adversarial examples against the current weights.
BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, nn.Module], torch.Tensor]


@dataclass
class _Setup:
    """What :func:`train_classifier` resolved before its first step."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    on_device: bool
    images: torch.Tensor  # uint8 N x C x H x W, on the device when ``on_device``
    labels: torch.Tensor  # int64 N, on the device
    val: tuple[torch.Tensor, torch.Tensor] | None
    rank: int = 0  # this process's rank and the number of processes
    world: int = 1
    ddp: bool = False  # under DistributedDataParallel (world > 1, or distributed=True in a group of 1)


def train_classifier(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    config: TrainConfig | None = None,
    val: tuple[Any, Any] | None = None,
    progress: Any = True,
    description: str = "train",
    batch_transform: BatchTransform | None = None,
) -> TrainResult:
    """Train ``model`` with softmax cross-entropy on uint8 images.

    Args:
        model: any module mapping B x C x H x W floats in [-1, 1] to logits B x K. A model with a
            ``fit_statistics(images)`` method gets it called first (see ``TrainConfig.fit_statistics``).
        images: uint8 N x C x H x W (numpy, memory map or tensor on any device).
        labels: N class indices in [0, K).
        config: training options (defaults: :class:`TrainConfig`).
        val: optional ``(images, labels)`` evaluated after every epoch (never transformed).
        progress: ``True`` for a progress bar, ``False`` for none, or a started
            ``rich.progress.Progress`` to add a task to (e.g. the experiment runner's display).
        description: label of the progress task.
        batch_transform: optional :data:`BatchTransform` applied to every training batch.

    Returns:
        :class:`TrainResult`; the model is trained in place and left in eval mode on the device.
    """
    config = config or TrainConfig()
    start_time = time.perf_counter()
    setup = _prepare(model, images, labels, val, config)
    n = len(setup.images)
    step_model = model
    if setup.ddp:
        from torch.nn.parallel import DistributedDataParallel

        # broadcasts rank 0's weights, so every rank starts from the same model
        step_model = DistributedDataParallel(model, device_ids=[setup.device] if setup.device.type == "cuda" else None)
        if setup.rank != 0:
            progress = False
    # dynamic=False: the one short last batch gets its own static graph instead of turning every
    # step into a dynamic-shape graph.
    if config.compile:
        step_model = torch.compile(step_model, dynamic=False, mode=config.compile_mode)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, betas=config.betas, eps=config.eps,
                                 weight_decay=config.weight_decay,
                                 **({"fused": True} if setup.device.type == "cuda" else {}))
    generator = torch.Generator().manual_seed(int(config.seed))
    history: list[dict[str, float]] = []
    best = (-1.0, 0, None)  # (val accuracy, epoch, state)

    # Dropout and other in-model randomness draw from torch's global RNG: seed it from the config
    # (restored afterwards) so a run does not depend on what the process did before, e.g. on
    # which cells a resumed grid skipped.
    device = setup.device
    rng_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices), \
            ProgressBar(progress, config.epochs * math.ceil(n / config.batch_size), description) as bar:
        # (each rank its own stream, so the ranks' dropout masks differ; rank 0's is the one-process one)
        torch.manual_seed((int(config.seed) * 0x9E3779B1 + 0x7F4A7C15 + setup.rank * 0x632BE5AB) % 2**63)
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            loss_sum, correct = _train_epoch(model, step_model, optimizer, setup, config, generator, epoch,
                                             batch_transform, bar)
            if setup.ddp:
                loss_sum, correct = _all_reduce_sum(loss_sum, correct)
            train_loss = float(loss_sum) / n  # the one host sync of the epoch
            if not math.isfinite(train_loss):
                raise RuntimeError(
                    f"training diverged at epoch {epoch} (loss {train_loss}); lower lr (now {config.lr})"
                )
            seconds = time.perf_counter() - epoch_start
            record = {"epoch": epoch, "loss": train_loss, "accuracy": int(correct) / n,
                      "seconds": seconds, "images_per_second": n / seconds}
            if setup.val is not None:  # under DDP every rank evaluates a share; all get the same figures
                record.update(_validate(model, setup, config))
                if config.keep_best and record["val_accuracy"] > best[0]:
                    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    best = (record["val_accuracy"], epoch, state)
            history.append(record)
            bar.advance(0, _epoch_info(record))

    best_epoch = config.epochs
    if config.keep_best and best[2] is not None:
        model.load_state_dict(best[2])
        best_epoch = best[1]
    model.eval()
    resolved = {
        **config.to_dict(),
        "resolved_device": str(device),
        "resolved_amp": "bf16" if setup.amp_dtype is not None else "off",
        "resolved_channels_last": setup.channels_last,
        "resolved_data_on_device": setup.on_device,
        "resolved_world_size": setup.world,
    }
    return TrainResult(model=model, history=history, config=resolved,
                       seconds=time.perf_counter() - start_time, best_epoch=best_epoch)


def _prepare(model: nn.Module, images: Any, labels: Any, val: tuple[Any, Any] | None,
             config: TrainConfig) -> _Setup:
    """Check the inputs, resolve device, precision and layout, move data and model to the device,
    and fit the model's input statistics where it has any."""
    images_t = as_uint8_tensor(images)
    n = len(images_t)
    if n == 0:
        raise ValueError("no training images")
    labels_t = _as_labels(labels, n)
    num_classes = getattr(model, "classifier_config", {}).get("num_classes")
    if num_classes is not None and int(labels_t.max()) >= num_classes:
        raise ValueError(f"label {int(labels_t.max())} out of range for a {num_classes}-class model")
    if config.keep_best and val is None:
        raise ValueError("keep_best needs validation data")
    rank, world, ddp = _process_group(config.distributed)
    device = resolve_device(config.device)
    if ddp and device.type == "cuda":  # one GPU per process: torchrun's LOCAL_RANK
        from privattrib.distributed import local_rank

        device = torch.device("cuda", local_rank() % torch.cuda.device_count())
        torch.cuda.set_device(device)
    amp_dtype = _resolve_amp(config.amp, device)
    channels_last = device.type == "cuda" if config.channels_last == "auto" else bool(config.channels_last)
    if config.data_on_device == "auto":
        on_device = _fits_on_device(images_t.numel(), device)
    else:
        on_device = bool(config.data_on_device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    images_t = images_t.to(device) if on_device else images_t
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    fit = getattr(model, "fit_statistics", None)
    if callable(fit):
        fitted = bool(getattr(model, "statistics_fitted", False))
        if config.fit_statistics is True or (config.fit_statistics == "auto" and not fitted):
            fit(images_t)

    val_t = None
    if val is not None:
        val_images = as_uint8_tensor(val[0], "val images")
        val_labels = _as_labels(val[1], len(val_images))
        if len(val_images):
            if on_device and _fits_on_device(val_images.numel(), device):
                val_images = val_images.to(device)
            val_t = (val_images, val_labels.to(device))
    return _Setup(device=device, amp_dtype=amp_dtype, channels_last=channels_last, on_device=on_device,
                  images=images_t, labels=labels_t.to(device), val=val_t, rank=rank, world=world, ddp=ddp)


def _process_group(distributed: str | bool) -> tuple[int, int, bool]:
    """(rank, world size, under DDP) of the training: ``auto`` uses DDP in a group of more than
    one process; ``True`` also in a group of one (to measure what DDP costs)."""
    import torch.distributed as dist

    active = dist.is_available() and dist.is_initialized()
    if distributed is True and not active:
        raise ValueError("distributed=True needs an initialised process group: launch with torchrun "
                         "(see privattrib.distributed.init_process_group)")
    if distributed is False or not active or (distributed == "auto" and dist.get_world_size() == 1):
        return 0, 1, False
    return dist.get_rank(), dist.get_world_size(), True


def _all_reduce_sum(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Sum each tensor over the ranks (one collective for all of them)."""
    import torch.distributed as dist

    flat = torch.stack([t.double() for t in tensors])
    dist.all_reduce(flat)
    return tuple(flat.unbind())


def _train_epoch(model: nn.Module, step_model: nn.Module, optimizer: torch.optim.Optimizer, setup: _Setup,
                 config: TrainConfig, generator: torch.Generator, epoch: int,
                 batch_transform: BatchTransform | None, bar: "ProgressBar") -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the training set in a seeded order; returns the summed loss and the number of
    correct predictions as device tensors (read once by the caller). Under DDP this rank's share:
    positions ``rank::world`` of every global batch."""
    device, n = setup.device, len(setup.images)
    rank, world = setup.rank, setup.world
    model.train()
    perm = torch.randperm(n, generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if config.hflip else None
    perm_d = perm.to(setup.images.device)
    flips_d = flips.to(device) if flips is not None else None
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for start in range(0, n, config.batch_size):
        fit_threads(device)  # follow the cores other processes leave free (rate-limited, cheap)
        stop = min(n, start + config.batch_size)
        idx = perm_d[start + rank:stop:world]
        x_u8 = _gather(setup.images, idx, device)
        y = setup.labels[idx.to(device)] if idx.device != device else setup.labels[idx]
        if batch_transform is not None:
            x_u8 = _transformed(batch_transform, x_u8, y, idx, epoch, model)
        flip = flips_d[start + rank:stop:world] if flips_d is not None else None
        x = _to_input(x_u8, flip, setup.channels_last)
        with _autocast(device, setup.amp_dtype):
            logits = step_model(x)
        if not setup.ddp:
            loss = F.cross_entropy(logits.float(), y)
            batch_loss = loss.detach() * len(y)
        else:
            # DDP averages the ranks' gradients; scaled so, the average is the gradient of the
            # global batch's mean loss whatever the shares' sizes (the last batch may be uneven)
            batch_loss = F.cross_entropy(logits.float(), y, reduction="sum")
            loss = batch_loss * (world / (stop - start))
            batch_loss = batch_loss.detach()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += batch_loss
        correct += (logits.detach().argmax(1) == y).sum()
        bar.advance()
    return loss_sum, correct


def _transformed(batch_transform: BatchTransform, x_u8: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
                 epoch: int, model: nn.Module) -> torch.Tensor:
    """Apply the caller's batch transform and check that it kept the batch's form."""
    out = batch_transform(x_u8, y, idx, epoch, model)
    if not isinstance(out, torch.Tensor) or out.dtype != torch.uint8 or out.shape != x_u8.shape:
        got = f"{out.dtype} {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"batch_transform must return a uint8 batch of shape {tuple(x_u8.shape)}, got {got}")
    model.train()  # a transform may have evaluated the model (e.g. an adversarial attack)
    return out.to(x_u8.device)


def _validate(model: nn.Module, setup: _Setup, config: TrainConfig) -> dict[str, float]:
    """Loss and accuracy on the whole validation set. Under DDP each rank evaluates positions
    ``rank::world`` of it and the sums are all-reduced, after every rank took rank 0's buffers
    (each rank's BatchNorm statistics followed its own share of the last batches): the figures are
    those of rank 0's model, the one that is saved, and the same on every rank."""
    val_images, val_labels = setup.val
    n = len(val_labels)
    if setup.ddp:
        _broadcast_buffers(model)
        val_images, val_labels = val_images[setup.rank::setup.world], val_labels[setup.rank::setup.world]
    loss_sum = torch.zeros((), device=setup.device)
    correct = torch.zeros((), device=setup.device)
    if len(val_labels):  # a rank's share is empty when the set is smaller than the group
        logits = evaluate_logits(model, val_images, config.eval_batch_size, setup.device, setup.amp_dtype,
                                 setup.channels_last)
        loss_sum = F.cross_entropy(logits, val_labels, reduction="sum")
        correct = (logits.argmax(1) == val_labels).sum()
    if setup.ddp:
        loss_sum, correct = _all_reduce_sum(loss_sum, correct)
    return {"val_loss": float(loss_sum) / n, "val_accuracy": int(correct) / n}


def _broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank."""
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def _epoch_info(record: dict[str, float]) -> str:
    info = f"loss {record['loss']:.3f} acc {record['accuracy']:.3f}"
    if "val_accuracy" in record:
        info += f" val {record['val_accuracy']:.3f}"
    return info


@torch.no_grad()
def evaluate_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
) -> torch.Tensor:
    """Float32 logits N x K on ``device`` for uint8 images N x C x H x W (model in eval mode)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            fit_threads(device)
            chunk = images[start:start + batch_size]
            if chunk.device != device:
                chunk = chunk.to(device, non_blocking=True)
            x = _to_input(chunk, None, channels_last)
            with _autocast(device, amp_dtype):
                out.append(model(x).float())
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("no images to evaluate")
    return torch.cat(out)


def predict(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 512,
    device: str | torch.device = "auto",
    amp: str | bool = "auto",
    channels_last: str | bool = "auto",
) -> np.ndarray:
    """Logits of ``model`` for uint8 images.

    Args:
        model: a classifier (moved to ``device``).
        images: uint8 N x C x H x W (numpy or tensor).
        batch_size: images per forward pass.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        amp: as in :class:`TrainConfig` (bf16 autocast on CUDA by default; logits returned in float32).
        channels_last: as in :class:`TrainConfig`.

    Returns:
        float32 numpy array N x K.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if amp not in ("auto", "bf16", "off", True, False):
        raise ValueError(f"amp must be 'auto', 'bf16', 'off', True or False, got {amp!r}")
    images_t = as_uint8_tensor(images)
    device = resolve_device(device)
    use_cl = device.type == "cuda" if channels_last == "auto" else bool(channels_last)
    model.to(device)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    logits = evaluate_logits(model, images_t, int(batch_size), device, _resolve_amp(amp, device), use_cl)
    return logits.cpu().numpy()


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy that keeps ``classifier_config`` (for fine-tuning without touching the original)."""
    return copy.deepcopy(getattr(model, "_orig_mod", model))
