"""A small Vision Transformer whose feed-forward (and optionally attention projection) layers are pre-defined
sparse, trained from scratch.

``[batch, C, H, W]`` -> non-overlapping ``patch x patch`` patches, ``T = (H / patch) * (W / patch)`` tokens of
``C * patch**2`` values -> linear embedding to ``d_model`` + a class token + learned positions -> ``depth``
pre-norm blocks ``x + Attn(LN(x))``, ``x + FF(LN(x))`` -> LayerNorm of the class token -> ``n_classes`` logits.

Every block's layers are plain named ``nn.Linear`` modules (``attn.qkv`` ``d_model -> 3 d_model``,
``attn.proj``, ``ff.fc1`` ``d_model -> d_ff``, ``ff.fc2`` ``d_ff -> d_model``), so :func:`~sparseforge.sparsify`
can replace them; attention itself is ``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .sparsify import SparsifyReport, sparsify

__all__ = ["FeedForward", "SelfAttention", "Block", "ViT", "sparse_vit"]


class FeedForward(nn.Module):
    """``[*, d_model] -> fc1 -> GELU -> fc2 -> [*, d_model]``."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention ``[B, T, d_model] -> [B, T, d_model]`` with ``qkv`` and ``proj`` projections."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be a multiple of heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # [B, heads, T, d_head]
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm Transformer encoder block."""

    def __init__(self, d_model: int, heads: int, d_ff: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads)
        self.ff = FeedForward(d_model, d_ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ff(self.ln2(x))


class ViT(nn.Module):
    """Vision Transformer for small images (see the module docstring). Output ``[batch, n_classes]``."""

    def __init__(self, image_shape: tuple[int, int, int], n_classes: int, *, patch: int = 7, d_model: int = 64,
                 depth: int = 2, heads: int = 4, d_ff: int = 256) -> None:
        super().__init__()
        c, h, w = image_shape
        for name, v in (("patch", patch), ("d_model", d_model), ("depth", depth), ("heads", heads), ("d_ff", d_ff)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive integer")
        if h % patch or w % patch:
            raise ValueError(f"patch={patch} must divide the image size {h}x{w}")
        self.patch, self.n_tokens = patch, (h // patch) * (w // patch)
        self.embed = nn.Linear(c * patch * patch, d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos = nn.Parameter(torch.randn(1, self.n_tokens + 1, d_model) * 0.02)
        self.blocks = nn.ModuleList(Block(d_model, heads, d_ff) for _ in range(depth))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, T, C * patch**2]`` (patches in row-major order, values channel-major)."""
        p = self.patch
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(self.tokens(x))
        z = torch.cat([self.cls.expand(z.shape[0], -1, -1), z], dim=1) + self.pos
        for blk in self.blocks:
            z = blk(z)
        return self.head(self.norm(z[:, 0]))


def sparse_vit(image_shape: tuple[int, int, int], n_classes: int, *, ff_density: float = 1.0,
               proj_density: float | None = None, family: str = "structured", seed: int = 0,
               **vit_options) -> tuple[ViT, SparsifyReport | None]:
    """A :class:`ViT` with its feed-forward layers (``blocks.*.ff.fc1/fc2``) at ``ff_density`` and, with
    ``proj_density``, its attention projections (``blocks.*.attn.qkv/proj``) too; embedding and head stay
    dense. Returns the model and the :func:`sparsify` report (None when nothing was made sparse)."""
    model = ViT(image_shape, n_classes, **vit_options)
    density: dict[str, float] = {}
    if ff_density != 1.0:
        density.update({"blocks.*.ff.fc1": ff_density, "blocks.*.ff.fc2": ff_density})
    if proj_density is not None and proj_density != 1.0:
        density.update({"blocks.*.attn.qkv": proj_density, "blocks.*.attn.proj": proj_density})
    if not density:
        return model, None
    report = sparsify(model, density=density, include=list(density), family=family, seed=seed, dense_last=False)
    return model, report
