"""The training loop: Adam, noise schedule, held-out validation with early stopping, progress on stderr.

It knows nothing of what the model is for beyond `model(x) -> (reconstruction, logits, code)`.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .. import distributed
from ..errors import ConfigError
from .autoencoder import (BinaryAutoencoder, balance_penalty, bernoulli_kl, contractive_penalty, corrupt,
                          decorrelation_penalty, neighbor_loss, reconstruction_loss, sparsity_penalty, target_loss)
from .distill import LOSSES


MAX_EPOCHS = 100_000
CONTRACTIVE_ROWS = 32  # rows of each batch on which the contractive penalty is estimated (it costs a double backward)


@dataclass
class TrainConfig:
    epochs: int | None = None  # None = auto: 30, texts TEXT_EPOCHS (see auto_epochs); early stopping may end sooner
    batch_size: int = 0        # 0 = auto: about 100 steps an epoch, 32 to 256 items a batch (texts: 50, to 1,024)
    lr: float = 1e-3
    weight_decay: float = 0.0
    noise: float = 4.0         # std of the Gaussian noise on the code logits
    noise_ramp: int = 3        # epochs over which the noise grows linearly from 0 to `noise`
    balance: float = 0.25      # weight of the bit-balance penalty (relative to the reconstruction loss)
    decorrelation: float = 0.0  # weight of the bit-decorrelation penalty (relative, likewise)
    neighbors: float = 0.0     # weight of the neighbour (contrastive) term (relative, likewise)
    n_neighbors: int | None = None  # neighbours per item in the k-NN graph of the training rows; None: 10, images
                                    # 20 (diffusion.default_walk)
    temperature: float = 0.3   # of the neighbour term's softmax
    diffusion: float | None = None  # weight of the diffusion-code target term (relative, likewise; 0: off); see
                                    # diffusion.py; None: 1 for texts, 0.3 otherwise (diffusion.default_walk)
    diffusion_time: float | None = None  # random-walk steps of the diffusion codes (more = coarser, class-like
                                         # bits); None: 10 for texts, 300 otherwise
                                         # (diffusion.default_walk)
    shared_neighbors: float | None = None  # > 0: the diffusion graph's edges weigh (1 + neighbours shared) ** this
                                           # (diffusion.normalized_adjacency); 0: every edge weighs 1; None: 2 for
                                           # images, 0 otherwise (diffusion.default_walk)
    graph_dims: int | None = None  # the view the k-NN graph is built in (neighbors.principal_view): principal
    graph_power: float | None = None  # dimensions, the power the features are raised to first, the whitening
    graph_whiten: float | None = None  # exponent; None: 128, 0.5, 0.5 for images, 128, 1, 0.5 for other real
                                       # vectors, 32, 1, 0 for texts (diffusion.WALKS)
    diffusion_mix: float | None = None  # weight of the items' own principal coordinates beside the diffusion
                                        # ones; None: 5 for "real" vectors, 1 otherwise (diffusion.default_walk)
    # the autoencoder family (all off by default); weights are relative to the reconstruction loss, as above
    corruption: float = 0.0    # denoising: share of input entries zeroed in training (texts: word dropout)
    input_noise: float = 0.0   # denoising: std of Gaussian noise added to dense input vectors in training
    sparsity: float = 0.0      # weight of KL(sparsity_target || each code unit's mean activation in the batch)
    sparsity_target: float = 0.5  # the mean activation the sparsity term pulls each code unit toward
    contractive: float = 0.0   # weight of the squared Frobenius norm of d code / d input (Hutchinson estimate)
    variational: float = 0.0   # > 0: Bernoulli-sampled codes in training, and this weight on KL(q || Bernoulli(0.5))
    # after training, epochs of listwise distillation of the exact cosine neighbours into the encoder
    # (semhash.hashers.distill; dense features only): codes that rank each item's own neighbours first
    rank_epochs: int | None = None  # None: RANK_EPOCHS for the data (real vectors), 0 (off) otherwise
    rank_lr: float = 3e-4      # Adam's learning rate for those epochs
    rank_temperature: float = 0.05  # the teacher's softmax temperature over the candidates' cosines
    rank_loss: str = "topk"    # distill.LOSSES: "topk" (the 10 nearest against the rest) or "soft" (that teacher)
    val_fraction: float = 0.1  # held out for early stopping (0 disables)
    patience: int = 5          # epochs without validation improvement before stopping
    seed: int = 0
    device: str = "auto"       # auto | cpu | cuda | mps
    threads: int = 0           # CPU threads (torch and BLAS) while fitting; 0: the cores not already busy

    def __post_init__(self) -> None:
        numbers = {"learning rate": self.lr, "noise": self.noise, "balance": self.balance,
                   "decorrelation": self.decorrelation, "neighbors": self.neighbors, "temperature": self.temperature,
                   "diffusion": self.diffusion or 0.0, "diffusion time": self.diffusion_time or 0.0,
                   "diffusion mix": self.diffusion_mix or 0.0,
                   "shared_neighbors": self.shared_neighbors or 0.0, "graph_power": self.graph_power or 0.0,
                   "graph_whiten": self.graph_whiten or 0.0, "validation fraction": self.val_fraction,
                   "corruption": self.corruption, "input_noise": self.input_noise, "sparsity": self.sparsity,
                   "sparsity_target": self.sparsity_target, "contractive": self.contractive,
                   "variational": self.variational, "rank_lr": self.rank_lr,
                   "rank_temperature": self.rank_temperature}
        for name, value in numbers.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        checks = [
            (isinstance(self.seed, int) and 0 <= self.seed < 2 ** 32, f"seed must be from 0 to {2 ** 32 - 1}"),
            (self.epochs is None or self.epochs <= MAX_EPOCHS, f"epochs must be at most {MAX_EPOCHS:,}"),
            (isinstance(self.threads, int) and 0 <= self.threads <= 1024, "threads must be from 0 (automatic) to 1024"),
            (self.epochs is None or self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 0, "batch size must be at least 1 (or 0 for automatic)"),
            (self.lr > 0, "learning rate must be positive"),
            (self.noise >= 0, "noise must be >= 0"),
            (self.noise_ramp >= 0, "noise ramp must be >= 0"),
            (min(self.balance, self.decorrelation, self.neighbors, self.diffusion or 0.0) >= 0, "penalty weights must be >= 0"),
            ((self.diffusion_time is None or self.diffusion_time >= 0) and (self.diffusion_mix or 0.0) >= 0,
             "diffusion time and mix must be >= 0"),
            (self.shared_neighbors is None or self.shared_neighbors >= 0,
             f"shared_neighbors is the power of the shared-neighbour edge weights: >= 0 (0: every edge weighs 1); "
             f"got {self.shared_neighbors}"),
            (self.graph_dims is None or (isinstance(self.graph_dims, int) and self.graph_dims >= 1),
             f"graph_dims must be a whole number, at least 1 (None: the default for the data); got {self.graph_dims!r}"),
            (self.graph_power is None or 0 < self.graph_power <= 1,
             f"graph_power must be in (0, 1] (1: the features as they are); got {self.graph_power}"),
            (self.graph_whiten is None or self.graph_whiten >= 0,
             f"graph_whiten must be >= 0 (0: no whitening, 1: full); got {self.graph_whiten}"),
            (self.n_neighbors is None or (isinstance(self.n_neighbors, int) and self.n_neighbors >= 1),
             f"n_neighbors must be a whole number, at least 1 (None: the default for the data); got {self.n_neighbors!r}"),
            (0 <= self.corruption < 1, f"corruption (--corruption) is the share of input entries zeroed in training: "
                                       f"from 0 (off) up to, not including, 1; got {self.corruption}"),
            (self.input_noise >= 0, f"input_noise (--input-noise) is a noise std: >= 0 (0: off); "
                                    f"got {self.input_noise}"),
            (self.sparsity >= 0, f"sparsity (--sparsity) is a penalty weight: >= 0 (0: off); got {self.sparsity}"),
            (0 < self.sparsity_target < 1, f"sparsity_target (--sparsity-target) is a mean activation: strictly "
                                           f"between 0 and 1; got {self.sparsity_target}"),
            (self.contractive >= 0, f"contractive (--contractive) is a penalty weight: >= 0 (0: off); "
                                    f"got {self.contractive}"),
            (self.variational >= 0, f"variational (--variational) is a KL weight: >= 0 (0: the deterministic "
                                    f"bottleneck); got {self.variational}"),
            (self.rank_epochs is None or (isinstance(self.rank_epochs, int) and not isinstance(self.rank_epochs, bool)
                                          and 0 <= self.rank_epochs <= MAX_EPOCHS),
             f"rank_epochs must be a whole number from 0 (off) to {MAX_EPOCHS:,} (None: the default for the data); "
             f"got {self.rank_epochs!r}"),
            (self.rank_loss in LOSSES, f"rank_loss must be {' or '.join(LOSSES)}; got {self.rank_loss!r}"),
            (self.rank_lr > 0 and self.rank_temperature > 0,
             f"rank_lr and rank_temperature must be > 0; got {self.rank_lr} and {self.rank_temperature}"),
            (self.temperature >= 0, "temperature must be >= 0 (0: a pull between neighbours only)"),
            (0 <= self.val_fraction < 1, "validation fraction must be in [0, 1)"),
            (self.patience >= 1, "patience must be at least 1"),
            (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
             f"device must be auto, cpu, cuda or mps, got {self.device!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    def to_dict(self) -> dict:
        return asdict(self)


def auto_threads(sample: float = 0.25) -> int:
    """Threads for CPU training: OMP_NUM_THREADS where set; else the cores that other processes are not
    using right now (sampled from /proc/stat over `sample` seconds), at least one; all cores where that
    cannot be read. torch's threads
    spin while they wait for a core: on this 2-core machine with one core taken by another job, two threads
    trained 1.8-1.9x slower than one, while on an idle machine two were 1.5x faster on texts."""
    cores = os.cpu_count() or 1
    asked = os.environ.get("OMP_NUM_THREADS", "")
    if asked.isdigit() and int(asked) > 0:  # the user (or a test run) has said how many
        return min(int(asked), 1024)
    first = _cpu_jiffies()
    if first is None:
        return cores
    time.sleep(sample)  # this process sleeps meanwhile: what is busy is the others
    second = _cpu_jiffies()
    busy, total = second[0] - first[0], second[1] - first[1]
    others = cores * busy / total if total > 0 else 0.0
    return max(1, min(cores, cores - int(round(others))))


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[int]:
    """Limit torch's and the BLAS libraries' threads to `threads` (0: auto_threads()) inside; yields it."""
    n = threads or auto_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        torch.set_num_threads(before)


def pick_device(name: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU for 'auto'; otherwise the named device, checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is available; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps was asked for, but Apple MPS is not available; use --device cpu or auto")
    return torch.device(name)


def rows_to_tensor(X, idx: np.ndarray | slice, device: torch.device) -> torch.Tensor:
    """Rows `idx` (indices, or a slice: no copy of dense float32 rows) of a dense or sparse matrix as a
    float32 tensor on `device`: dense, or for a sparse matrix on the CPU a sparse COO tensor (the
    autoencoder's first layer and its "distribution" loss then cost in proportion to the non-zeros, not
    to the vocabulary: exactly the same values, 1.3x faster training on the Debian descriptions)."""
    rows = X[idx]
    if sp.issparse(rows) and device.type == "cpu":  # on a GPU the dense product is cheap enough
        coo = rows.tocoo()
        ij = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        values = torch.from_numpy(coo.data.astype(np.float32))
        return torch.sparse_coo_tensor(ij, values, coo.shape, check_invariants=False).coalesce()
    if sp.issparse(rows):
        rows = rows.toarray()
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(device, non_blocking=True)


def _adam(model: BinaryAutoencoder, cfg: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with its fused kernel where torch has one for the device (a third of the single-tensor
    version's time on the CPU: its step over the 10,000-word layers cost as much as the batch itself)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


EPOCHS, TEXT_EPOCHS = 30, 10


def auto_epochs(output_type: str = "real") -> int:
    """The most epochs when none are given. Texts (the "distribution" output) take fewer: on the Debian
    descriptions 10 epochs scored as well as 30 (README, "How the defaults were chosen"), in a third of the
    training loop's time."""
    return TEXT_EPOCHS if output_type == "distribution" else EPOCHS


def auto_batch_size(n: int, output_type: str = "real") -> int:
    """Small corpora need small batches to get enough optimizer steps per epoch: about 100 steps, 32 to 256
    items a batch. Texts (the "distribution" output) take about 50 steps, up to 1,024 items: their steps
    cost little per item beyond the batch's fixed work (as good on the Debian descriptions, in less time)."""
    if output_type == "distribution":
        return int(min(1024, max(32, n // 50)))
    return int(min(256, max(32, n // 100)))


def _noise_at(cfg: TrainConfig, epoch: int) -> float:
    if cfg.noise_ramp <= 0:
        return cfg.noise
    return cfg.noise * min(1.0, (epoch + 1) / cfg.noise_ramp)


def train(model: BinaryAutoencoder, X, cfg: TrainConfig, progress: bool = True, neighbors: np.ndarray | None = None,
          targets: np.ndarray | None = None) -> dict:
    """Fit `model` to the rows of X in place; return the history. The best validation state is kept.

    `neighbors` (n, k) row indices: the k-NN graph used by the neighbour term (cfg.neighbors > 0).
    `targets` (n, bits) 0/1: bits the code logits are pulled toward (cfg.diffusion: their weight; None, the
    default for the data, diffusion.default_walk)."""
    device = distributed.device_for(pick_device(cfg.device))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n = X.shape[0]
    order = rng.permutation(n)
    n_val = int(round(n * cfg.val_fraction)) if n >= 20 else 0
    val_idx, train_idx = np.sort(order[:n_val]), order[n_val:]
    batch_size = cfg.batch_size or auto_batch_size(len(train_idx), model.cfg.output_type)
    epochs = cfg.epochs or auto_epochs(model.cfg.output_type)
    model.to(device)
    model.stochastic = cfg.variational > 0
    opt = _adam(model, cfg, device)
    ranks, me = distributed.world(), distributed.rank()
    net = model
    if ranks > 1:  # each process takes every ranks-th row of the epoch's order; DDP averages the gradients
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        batch_size = max(1, batch_size // ranks)
    use_amp = device.type == "cuda"
    otype = model.cfg.output_type
    use_neighbors = bool(cfg.neighbors) and neighbors is not None and neighbors.shape[1] > 0
    target_bits = None
    weight = cfg.diffusion
    if weight is None:
        from .diffusion import default_walk
        weight = default_walk(otype).weight
    if weight and targets is not None:
        target_bits = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32)).to(device)
    batches_per_epoch = math.ceil(len(train_idx) // ranks / batch_size)
    history: dict = {"train_loss": [], "val_loss": [], "noise": [], "epochs_run": 0, "stopped_early": False}
    best, best_state, bad_epochs = math.inf, None, 0
    started = time.time()
    bar = tqdm(total=epochs * batches_per_epoch, disable=not progress or me != 0, file=sys.stderr,
               unit="batch", desc="training", dynamic_ncols=True, leave=False)
    for epoch in range(epochs):
        model.train()
        model.noise_std = _noise_at(cfg, epoch)
        perm = train_idx[rng.permutation(len(train_idx))]
        if ranks > 1:  # equal shards: every process takes the same number of steps
            perm = perm[:len(perm) // ranks * ranks][me::ranks]
        total, count = 0.0, 0
        for start in range(0, len(perm), batch_size):
            idx = perm[start:start + batch_size]
            xb = rows_to_tensor(X, idx, device)
            # the denoising autoencoder sees a corrupted input and reconstructs the clean one
            x_in = corrupt(xb, cfg.corruption, cfg.input_noise) if cfg.corruption or cfg.input_noise else xb
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                out, logits, code = net(x_in)
                if use_neighbors:
                    nb = neighbors[idx, rng.integers(0, neighbors.shape[1], len(idx))]
                    logits_nb = model.code_logits(rows_to_tensor(X, nb, device))
            recon = reconstruction_loss(out, model.target(xb), otype)
            # penalties are scaled by the (detached) reconstruction loss, so their weights mean the
            # same whatever the data type and width
            scale = recon.detach()
            loss = recon
            if cfg.balance:
                loss = loss + cfg.balance * scale * balance_penalty(code)
            if cfg.decorrelation:
                loss = loss + cfg.decorrelation * scale * decorrelation_penalty(code)
            if use_neighbors:
                loss = loss + cfg.neighbors * scale * neighbor_loss(logits, logits_nb, cfg.temperature)
            if target_bits is not None:
                loss = loss + weight * scale * target_loss(logits, target_bits[torch.from_numpy(idx).to(device)])
            if cfg.sparsity:
                loss = loss + cfg.sparsity * scale * sparsity_penalty(code, cfg.sparsity_target)
            if cfg.variational:
                loss = loss + cfg.variational * scale * bernoulli_kl(logits)
            if cfg.contractive:
                sub = rows_to_tensor(X, idx[:CONTRACTIVE_ROWS], device)
                sub = sub.to_dense() if sub.is_sparse else sub  # the Jacobian is taken against every input entry
                loss = loss + cfg.contractive * scale * contractive_penalty(model, sub)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += recon.item() * xb.shape[0]
            count += xb.shape[0]
            bar.update(1)
        history["train_loss"].append(total / count)
        history["noise"].append(model.noise_std)
        history["epochs_run"] = epoch + 1
        val = validation_loss(model, X, val_idx, 1024, device) if n_val else history["train_loss"][-1]
        history["val_loss"].append(val)
        bar.set_postfix(epoch=epoch + 1, loss=f"{history['train_loss'][-1]:.4f}", val=f"{val:.4f}")
        # only judge the model once the noise has reached full strength: before that the codes are soft
        if epoch + 1 >= cfg.noise_ramp:
            if val < best - 1e-6:
                best, bad_epochs = val, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_epochs += 1
                if bad_epochs >= cfg.patience:
                    history["stopped_early"] = True
                    break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history["best_val_loss"] = best if best < math.inf else None
    history["seconds"] = round(time.time() - started, 2)
    history["device"] = str(device)
    history["batch_size"] = batch_size
    return history


@torch.no_grad()
def validation_loss(model: BinaryAutoencoder, X, idx: np.ndarray, batch_size: int, device: torch.device) -> float:
    """Reconstruction loss through the *hard* binary code, as the model is used at inference."""
    model.eval()
    total = 0.0
    for start in range(0, len(idx), batch_size):
        xb = rows_to_tensor(X, idx[start:start + batch_size], device)
        code = (model.code_logits(xb) > 0).float()
        total += reconstruction_loss(model.decode(code), model.target(xb), model.cfg.output_type).item() * xb.shape[0]
    return total / max(1, len(idx))


@torch.no_grad()
def predict_logits(model: BinaryAutoencoder, X, batch_size: int = 4096, device: torch.device | None = None
                   ) -> np.ndarray:
    """(n, bits) float32 code logits, deterministic (eval mode, no noise)."""
    model.eval()
    device = device or next(model.parameters()).device
    out = np.empty((X.shape[0], model.cfg.bits), dtype=np.float32)
    for start in range(0, X.shape[0], batch_size):
        rows = slice(start, min(X.shape[0], start + batch_size))
        out[rows] = model.code_logits(rows_to_tensor(X, rows, device)).float().cpu().numpy()
    return out
