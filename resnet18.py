"""ResNet-18, written out from He et al. 2015, "Deep Residual Learning for Image Recognition".

The model and nothing else: no optimizer, data, printing or device moves. Module names follow
torchvision's `models/resnet.py`, so a torchvision state_dict loads with strict=True.
"""

import torch
from torch import nn

STEMS = ("cifar", "imagenet")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # bias=False: every conv is followed by BatchNorm, whose shift (beta) makes a bias redundant
    # (Ioffe & Szegedy 2015, section 3.2).
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus a shortcut (He et al. 2015, Figure 2 and Figure 5 left)."""

    expansion = 1  # output channels / `channels`; 4 for the bottleneck block of deeper ResNets

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        # None: identity shortcut (the paper's solid lines). Otherwise a projection that matches
        # the new shape (dashed lines, option B of section 3.3).
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet18(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock] = BasicBlock,
        num_blocks: tuple[int, int, int, int] = (2, 2, 2, 2),
        num_classes: int = 10,
        stem: str = "cifar",
        width: int = 64,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if stem == "cifar":
            # A 32x32 image cannot afford the ImageNet stem's 4x down-sampling: the paper's own
            # CIFAR nets (section 4.2) start with a single 3x3 conv and no pooling.
            self.conv1 = conv3x3(3, width)
            self.maxpool: nn.Module = nn.Identity()
        elif stem == "imagenet":
            # Table 1, conv1 and the start of conv2_x: 7x7/2 conv, then 3x3/2 max-pool.
            self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)

        # Table 1 of He et al. 2015, one row per stage: each later stage doubles the channels and
        # halves the resolution, which keeps the cost per layer roughly constant (section 3.3).
        self.in_channels = width
        self.layer1 = self.make_layer(block, width * 1, num_blocks[0], stride=1)  # conv2_x
        self.layer2 = self.make_layer(block, width * 2, num_blocks[1], stride=2)  # conv3_x
        self.layer3 = self.make_layer(block, width * 4, num_blocks[2], stride=2)  # conv4_x
        self.layer4 = self.make_layer(block, width * 8, num_blocks[3], stride=2)  # conv5_x

        # Adaptive pooling, not avg_pool2d(out, 4), so that any input size works.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.in_channels, num_classes)  # PyTorch's default init, as torchvision

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He et al. 2015, "Delving Deep into Rectifiers", eq. 10: std = sqrt(2 / n) keeps
                # the variance steady through ReLUs; n = fan_out preserves it in the backward pass.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Goyal et al. 2017, "Accurate, Large Minibatch SGD", section 5.1: with the last BN's
            # gamma at 0 every residual branch starts at 0, so each block starts as the identity
            # and the network starts as if it were shallower, which eases early training.
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def make_layer(
        self, block: type[BasicBlock], channels: int, num_blocks: int, stride: int
    ) -> nn.Sequential:
        """One stage: the first block changes the shape (stride, channels), the rest keep it."""
        downsample = None
        if stride != 1 or self.in_channels != channels * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.in_channels, channels * block.expansion, stride),
                nn.BatchNorm2d(channels * block.expansion),
            )
        layers = [block(self.in_channels, channels, stride, downsample)]
        self.in_channels = channels * block.expansion
        for _ in range(1, num_blocks):
            layers.append(block(self.in_channels, channels))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Shape only, so no device sync. Without it a wrong input fails deep inside conv1 with a
        # message about weights, not images.
        if x.ndim != 4 or x.shape[1] != 3:
            hint = ""
            if x.ndim == 3:
                hint = "; add a batch dimension with x.unsqueeze(0)"
            elif x.ndim == 4 and x.shape[1] == 1:
                hint = "; convert grayscale images to RGB"
            raise ValueError(
                "expected a batch of 3-channel images shaped (N, 3, H, W), "
                f"got {tuple(x.shape)}{hint}"
            )
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def resnet18(
    num_classes: int = 10, stem: str = "cifar", width: int = 64, zero_init_residual: bool = False
) -> ResNet18:
    """ResNet-18 with the CIFAR stem (for 32x32 inputs) or the ImageNet stem (for 224x224)."""
    return ResNet18(
        BasicBlock,
        (2, 2, 2, 2),
        num_classes=num_classes,
        stem=stem,
        width=width,
        zero_init_residual=zero_init_residual,
    )
