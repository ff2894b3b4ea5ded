"""The binary autoencoder: encoder MLP -> `bits` logits -> noisy sigmoid bottleneck -> decoder.

Pure torch, no I/O. Gaussian noise is added to the code logits in training mode only (the
Salakhutdinov-Hinton trick): to carry information through the noise, the encoder learns to push
each logit far from zero, so the sigmoid units saturate at 0 or 1 and thresholding at
inference (`logit > 0`) loses little.

Options of the same model (all off by default; the trainer sets them): a stochastic binary bottleneck
(`stochastic`: Bernoulli codes sampled from the sigmoid probabilities, with a straight-through gradient,
as in VDSH / NASH), and the penalties below that the trainer may add: sparsity (KL to a target mean
activation), contractive (the code layer's Jacobian), and the variational KL to a Bernoulli(0.5) prior.
Input corruption for a denoising autoencoder is `corrupt`.
"""
from __future__ import annotations

import math
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
    decoder_hidden: list[int] | None = None  # decoder widths; None: the encoder's, mirrored; []: a linear decoder
    target_columns: list[int] | None = None  # input columns the decoder reconstructs (sorted); None: all

    def to_dict(self) -> dict:
        return asdict(self)


class InputLayer(nn.Module):
    """The encoder's first layer, x W + b, with W stored (input_dim, width): one row per input column.

    A sparse input (a COO tensor, coalesced) is then a weighted sum of the rows of its non-zero columns
    (embedding_bag), and the weight's gradient a scatter of the batch into those rows. Its cost follows the
    non-zeros. nn.Linear's (width, input_dim) layout made torch densify the batch for the product and its
    gradient: 15 ms a step at batch 256 on the 10,000-word Debian vocabulary, against 4 ms (/tmp probe).
    Checkpoints before this layout (no "layout" key) hold the weight transposed; AutoencoderHasher.load
    turns them."""

    def __init__(self, input_dim: int, width: int):
        super().__init__()
        bound = 1.0 / math.sqrt(input_dim)  # nn.Linear's initialisation, the same draws in the same order
        self.weight = nn.Parameter(torch.empty(width, input_dim).uniform_(-bound, bound).T.contiguous())
        self.bias = nn.Parameter(torch.empty(width).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_sparse:
            rows, cols = x.indices()
            starts = torch.searchsorted(rows, torch.arange(x.shape[0], device=rows.device))
            return F.embedding_bag(cols, self.weight, starts, mode="sum", per_sample_weights=x.values()) + self.bias
        return torch.addmm(self.bias, x, self.weight)


def _mlp(sizes: list[int], dropout: float, first: type = nn.Linear) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [(first if i == 0 else nn.Linear)(a, b), nn.ReLU()]
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
        self.encoder = _mlp(enc, cfg.dropout, first=InputLayer)
        self.to_code = nn.Linear(enc[-1], cfg.bits)
        dec = [cfg.bits, *(reversed(cfg.hidden) if cfg.decoder_hidden is None else cfg.decoder_hidden)]
        self.decoder = _mlp(dec, cfg.dropout)
        cols = cfg.target_columns
        self.to_output = nn.Linear(dec[-1], cfg.input_dim if cols is None else len(cols))
        # input column -> its place in the decoder's output, -1 where not reconstructed (not saved: cfg has it)
        remap = torch.full((cfg.input_dim,), -1, dtype=torch.long)
        if cols is not None:
            remap[torch.as_tensor(cols, dtype=torch.long)] = torch.arange(len(cols))
        self.register_buffer("_remap", remap, persistent=False)
        self.noise_std = 0.0  # set by the trainer; only used in training mode
        self.stochastic = False  # set by the trainer: sample 0/1 codes in training mode (straight-through)

    def code_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(n, input_dim) -> (n, bits) pre-sigmoid code logits. `x` may be a sparse COO tensor (coalesced):
        the first layer's cost then follows the non-zeros (InputLayer)."""
        return self.to_code(self.encoder(x * self.cfg.input_scale))

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """What the decoder reconstructs of input rows `x` (dense, or sparse COO coalesced): the target
        columns (cfg.target_columns), or all of x."""
        if self.cfg.target_columns is None:
            return x
        if not x.is_sparse:
            return x[:, torch.as_tensor(self.cfg.target_columns, device=x.device)]
        (rows, cols), values = x.indices(), x.values()
        new = self._remap[cols]
        keep = new >= 0
        # the remap keeps column order, so the entries stay coalesced (sorted by row, then column)
        return torch.sparse_coo_tensor(torch.stack([rows[keep], new[keep]]), values[keep],
                                       (x.shape[0], len(self.cfg.target_columns)), check_invariants=False).coalesce()

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
        if self.training and self.stochastic:
            # forward: a 0/1 sample of Bernoulli(code); backward: the gradient of the probabilities
            code = code + (torch.bernoulli(code.detach()) - code).detach()
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


def corrupt(x: torch.Tensor, share: float = 0.0, noise_std: float = 0.0) -> torch.Tensor:
    """The denoising autoencoder's training input: each entry zeroed with probability `share` (for a
    sparse COO tensor, each stored entry: word dropout on TF-IDF rows), then, for a dense tensor, Gaussian
    noise of std `noise_std` added. Not rescaled (masking noise as in Vincent et al. 2008)."""
    if share > 0:
        if x.is_sparse:
            keep = torch.rand(x._nnz(), device=x.device) >= share
            x = torch.sparse_coo_tensor(x.indices()[:, keep], x.values()[keep], x.shape,
                                        check_invariants=False).coalesce()
        else:
            x = x * (torch.rand_like(x) >= share)
    if noise_std > 0 and not x.is_sparse:
        x = x + noise_std * torch.randn_like(x)
    return x


def sparsity_penalty(code: torch.Tensor, target: float) -> torch.Tensor:
    """KL(target || mean activation) of each code unit over the batch (the classic sparse autoencoder's
    penalty), mean over units."""
    rho_hat = code.float().mean(dim=0).clamp(1e-6, 1 - 1e-6)
    rho = torch.tensor(target, dtype=rho_hat.dtype, device=rho_hat.device)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).mean()


def bernoulli_kl(logits: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(sigmoid(logits)) || Bernoulli(0.5)) per bit, mean over bits and items: log 2 minus
    the entropy of each bit (the variational bottleneck's prior term)."""
    z = logits.float()
    p = torch.sigmoid(z)
    # p log p + (1 - p) log(1 - p), written with logsigmoid so that saturated units stay finite
    neg_entropy = p * F.logsigmoid(z) + (1 - p) * F.logsigmoid(-z)
    return (neg_entropy + math.log(2.0)).mean()


def contractive_penalty(model: BinaryAutoencoder, x: torch.Tensor, probes: int = 1) -> torch.Tensor:
    """Mean over the rows of `x` (dense) of the squared Frobenius norm of d sigmoid(code logits) / d x,
    estimated as E ||J^T v||^2 with v ~ N(0, I) (Hutchinson; `probes` draws): one extra backward pass
    through the encoder, kept in the graph so that the penalty can be trained on."""
    x = x.detach().requires_grad_(True)
    code = torch.sigmoid(model.code_logits(x).float())  # (n, bits)
    total = code.new_zeros(())
    for _ in range(probes):
        (g,) = torch.autograd.grad(code, x, torch.randn_like(code), create_graph=True, retain_graph=True)
        total = total + g.pow(2).sum(dim=1).mean()  # g: (n, input_dim) = v^T J per row
    return total / probes


def jacobian_norm(model: BinaryAutoencoder, x: torch.Tensor) -> float:
    """The exact mean squared Frobenius norm of d sigmoid(code logits) / d x over the rows of `x` (dense;
    one backward pass per bit: for checks and small samples)."""
    x = x.detach().requires_grad_(True)
    code = torch.sigmoid(model.code_logits(x).float())
    total = 0.0
    for b in range(code.shape[1]):
        (g,) = torch.autograd.grad(code[:, b].sum(), x, retain_graph=True)
        total += float(g.pow(2).sum())
    return total / x.shape[0]
