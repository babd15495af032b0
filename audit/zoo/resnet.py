"""A torchvision-style ResNet (BasicBlock, ``layers=(2, 2, 2, 2)`` is ResNet-18) without
torchvision, for audits of ImageNet-sized models at 224 px (``bench/bench_224.py``) and user
projects that need the architecture by name (``--arch audit.zoo.resnet:ResNet``)."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a skip connection (1x1 conv-BN when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class ResNet(nn.Module):
    """Stem (7x7 stride-2 conv, BN, ReLU, 3x3 max pool), four stages of widths ``width * (1, 2,
    4, 8)``, global average pool, linear head. ``width=64`` matches torchvision's ResNet-18 (11.2M
    parameters with 1000 classes: 11.7M)."""

    def __init__(self, num_classes: int = 1000, width: int = 64,
                 layers: tuple[int, ...] = (2, 2, 2, 2), in_chans: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 7, 2, 3, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        stages: list[nn.Module] = []
        c_in = width
        for i, depth in enumerate(layers):
            c_out = width * 2 ** i
            blocks = [BasicBlock(c_in if j == 0 else c_out, c_out,
                                 2 if i > 0 and j == 0 else 1) for j in range(depth)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
