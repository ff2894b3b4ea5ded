"""The binary autoencoder: encoder MLP -> `bits` logits -> noisy sigmoid bottleneck -> decoder.

Pure torch, no I/O. Gaussian noise is added to the code logits in training mode only (the
Salakhutdinov-Hinton trick): to carry information through the noise, the encoder learns to push
each logit far from zero, so the sigmoid units saturate at 0 or 1 and thresholding at
inference (`logit > 0`) loses little.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

OUTPUT_TYPES = ("distribution", "unit", "real")


@dataclass
class AEConfig:
    input_dim: int
    bits: int = 32
    hidden: list[int] = field(default_factory=lambda: [256])
    output_type: str = "real"  # distribution | unit | real: chooses the output layer and loss
    dropout: float = 0.0
    input_scale: float = 1.0  # inputs are multiplied by this (sparse TF-IDF rows need scaling up)

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class BinaryAutoencoder(nn.Module):
    def __init__(self, cfg: AEConfig):
        super().__init__()
        if cfg.output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {cfg.output_type!r}")
        self.cfg = cfg
        enc = [cfg.input_dim, *cfg.hidden]
        self.encoder = _mlp(enc, cfg.dropout)
        self.to_code = nn.Linear(enc[-1], cfg.bits)
        dec = [cfg.bits, *reversed(cfg.hidden)]
        self.decoder = _mlp(dec, cfg.dropout)
        self.to_output = nn.Linear(dec[-1], cfg.input_dim)
        self.noise_std = 0.0  # set by the trainer; only used in training mode

    def code_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(n, input_dim) -> (n, bits) pre-sigmoid code logits. `x` may be a sparse COO tensor: the first
        layer is then a sparse-dense product, whose cost follows the non-zeros."""
        if x.is_sparse:
            first = self.encoder[0]
            h = torch.sparse.mm(x * self.cfg.input_scale, first.weight.T) + first.bias
            return self.to_code(self.encoder[1:](h))
        return self.to_code(self.encoder(x * self.cfg.input_scale))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """(n, bits) code activations in [0, 1] -> (n, input_dim) output logits / values."""
        return self.to_output(self.decoder(code))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (reconstruction logits, code logits, code activations)."""
        logits = self.code_logits(x)
        noisy = logits
        if self.training and self.noise_std > 0:
            noisy = logits + self.noise_std * torch.randn_like(logits)
        code = torch.sigmoid(noisy)
        return self.decode(code), logits, code


def reconstruction_loss(out: torch.Tensor, x: torch.Tensor, output_type: str) -> torch.Tensor:
    """Mean per-item loss that fits the data: softmax CE, BCE, or squared error. `x` may be a sparse COO
    tensor (coalesced, as rows_to_tensor makes it)."""
    if x.is_sparse:
        if output_type == "distribution":  # the same loss, summed over each row's non-zeros only
            (rows, cols), values = x.indices(), x.values()
            totals = torch.zeros(x.shape[0], device=values.device).index_add_(0, rows, values).clamp_min(1e-12)
            picked = F.log_softmax(out.float(), dim=1)[rows, cols]
            return -(values / totals[rows] * picked).sum() / x.shape[0]
        x = x.to_dense()
    if output_type == "distribution":
        # target: the row's term weights as a distribution over the vocabulary
        target = x / x.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return -(target * F.log_softmax(out.float(), dim=1)).sum(dim=1).mean()
    if output_type == "unit":
        return F.binary_cross_entropy_with_logits(out.float(), x, reduction="none").sum(dim=1).mean()
    return F.mse_loss(out.float(), x, reduction="none").sum(dim=1).mean()


def balance_penalty(code: torch.Tensor) -> torch.Tensor:
    """Pushes each bit to be on for half of the batch: mean over bits of (mean activation - 0.5)^2."""
    return ((code.float().mean(dim=0) - 0.5) ** 2).mean()


def decorrelation_penalty(code: torch.Tensor) -> torch.Tensor:
    """Mean squared off-diagonal correlation between code units over the batch."""
    c = code.float() - code.float().mean(dim=0, keepdim=True)
    cov = (c.T @ c) / max(1, c.shape[0] - 1)
    std = cov.diagonal().clamp_min(1e-6).sqrt()
    corr = cov / (std[:, None] * std[None, :])
    off = corr - torch.diag(corr.diagonal())
    n = corr.shape[0]
    return (off ** 2).sum() / max(1, n * (n - 1))


def neighbor_loss(z: torch.Tensor, z_nb: torch.Tensor, temperature: float) -> torch.Tensor:
    """How far each item's code logits are from its neighbour's, in cosine.

    temperature > 0: contrastive (InfoNCE): closer to its own neighbour than to the other items'
    neighbours in the batch (and vice versa). temperature == 0: a pull only, 1 - cosine, with no
    push between non-neighbours."""
    a = F.normalize(z.float(), dim=1)
    b = F.normalize(z_nb.float(), dim=1)
    if temperature == 0:
        return (1.0 - (a * b).sum(dim=1)).mean()
    sim = a @ b.T / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))


def target_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between the code logits and 0/1 target bits, mean over bits and items."""
    return F.binary_cross_entropy_with_logits(logits.float(), target)
