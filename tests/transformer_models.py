"""Small transformer variants written for the tests (plain torch), so the Grad-CAM layer search
and the attention explainers are exercised on architectures the library was not written for:
class-token and distillation-token ViTs with a fused ``qkv`` and ``scaled_dot_product_attention``,
a mean-pooled ViT with hand-written softmax attention, ``nn.TransformerEncoder`` (torchvision's
ViT uses ``nn.MultiheadAttention``), a channels-last ConvNeXt-style net and a windowed-attention
net (Swin-like, no global attention)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FusedAttention(nn.Module):
    """timm-style attention: one ``qkv`` projection, ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, c))


class SoftmaxAttention(nn.Module):
    """Attention written out: separate q, k, v projections and an explicit softmax."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(b, t, self.heads, c // self.heads).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        probs = (q @ k.transpose(-2, -1) / (c // self.heads) ** 0.5).softmax(dim=-1)
        return self.out((probs @ v).transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, fused: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = FusedAttention(dim, heads) if fused else SoftmaxAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """``prefix`` leading tokens (0: mean-pooled, 1: class token, 2: + distillation token)."""

    def __init__(self, image: int = 16, patch: int = 4, dim: int = 32, depth: int = 2,
                 heads: int = 4, classes: int = 4, prefix: int = 1, fused: bool = True) -> None:
        super().__init__()
        self.prefix = prefix
        self.patch = nn.Conv2d(3, dim, patch, patch)
        n = (image // patch) ** 2
        self.tokens = nn.Parameter(torch.randn(1, max(prefix, 1), dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, n + prefix, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, fused) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        if self.prefix:
            t = torch.cat([self.tokens[:, : self.prefix].expand(len(x), -1, -1), t], dim=1)
        t = self.norm(self.blocks(t + self.pos))
        return self.head(t[:, 0] if self.prefix else t.mean(dim=1))


class TorchEncoderViT(nn.Module):
    """Patches through ``nn.TransformerEncoder`` (``nn.MultiheadAttention`` inside)."""

    def __init__(self, image: int = 16, patch: int = 4, dim: int = 32, classes: int = 4) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.patch(x).flatten(2).transpose(1, 2)).mean(dim=1))


class ChannelsLast(nn.Module):
    """ConvNeXt-style blocks computed channels-last ``(N, h, w, C)`` to the end."""

    def __init__(self, dim: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, 4)
        self.norm = nn.LayerNorm(dim)
        self.mix = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.stem(x).permute(0, 2, 3, 1)
        t = t + self.mix(self.norm(t))
        return self.head(t.mean(dim=(1, 2)))


class Windowed(nn.Module):
    """Swin-like: attention only inside 2x2-patch windows, tokens kept channels-last."""

    def __init__(self, dim: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, 4)
        self.attn = FusedAttention(dim, 2)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.stem(x).permute(0, 2, 3, 1)  # (N, h, w, C)
        n, h, w, c = t.shape
        win = t.reshape(n, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, 4, c)
        win = win + self.attn(win)
        t = win.reshape(n, h // 2, w // 2, 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(n, h, w, c)
        return self.head(self.norm(t).mean(dim=(1, 2)))
