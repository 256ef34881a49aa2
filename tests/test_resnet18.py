"""Tests for resnet18.py: shapes, parameter counts, equivalence with torchvision, shortcuts,
gradients, initialisation and input errors. CPU only, small batches: the file runs in seconds."""

import math

import pytest
import torch
import torchvision
from torch import nn

from resnet18 import BasicBlock, ResNet18, resnet18

STAGES = ("layer1", "layer2", "layer3", "layer4")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def expected_params(width: int, num_classes: int, stem_kernel: int) -> int:
    """ResNet-18's parameter count worked out by hand from Table 1 of He et al. 2015."""
    total = 3 * width * stem_kernel**2 + 2 * width  # stem conv + BN (gamma, beta)
    in_channels = width
    for multiplier, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
        channels = width * multiplier
        for i in range(2):
            total += in_channels * channels * 9 + 2 * channels  # conv1 + bn1
            total += channels * channels * 9 + 2 * channels  # conv2 + bn2
            if i == 0 and (stride != 1 or in_channels != channels):
                total += in_channels * channels + 2 * channels  # 1x1 projection + BN
            in_channels = channels
    return total + in_channels * num_classes + num_classes  # fc


def torchvision_twin(stem: str, num_classes: int) -> nn.Module:
    """torchvision's resnet18, with the CIFAR stem swapped in when asked."""
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


@torch.no_grad()
def randomise_batchnorm(model: nn.Module) -> None:
    """Move every BN off its (1, 0, 0, 1) init so that a wrongly wired BN changes the output."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.1)
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize(
    ("stem", "num_classes", "size"),
    [("cifar", 10, 32), ("cifar", 10, 40), ("cifar", 100, 64), ("imagenet", 1000, 64)],
)
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_output_shape(stem: str, num_classes: int, size: int, batch: int) -> None:
    torch.manual_seed(0)
    model = resnet18(num_classes=num_classes, stem=stem, width=16).eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 3, size, size))
    assert out.shape == (batch, num_classes)
    assert torch.isfinite(out).all()


def test_output_shape_full_width_imagenet_224() -> None:
    torch.manual_seed(0)
    model = resnet18(num_classes=1000, stem="imagenet").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.parametrize(
    ("stem", "size", "expected"),
    [
        ("cifar", 32, [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]),
        ("imagenet", 224, [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]),
    ],
)
def test_stage_output_shapes(stem: str, size: int, expected: list) -> None:
    model = resnet18(stem=stem).eval()
    shapes = {}
    for name in STAGES:
        getattr(model, name).register_forward_hook(
            lambda module, inputs, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))
        )
    with torch.no_grad():
        model(torch.randn(2, 3, size, size))
    assert [shapes[name] for name in STAGES] == expected


def test_parameter_counts() -> None:
    assert count_params(resnet18(num_classes=10, stem="cifar")) == 11_173_962
    assert count_params(resnet18(num_classes=1000, stem="imagenet")) == 11_689_512
    assert expected_params(64, 10, stem_kernel=3) == 11_173_962  # the formula itself is right
    narrow = count_params(resnet18(num_classes=10, stem="cifar", width=16))
    assert narrow == expected_params(16, 10, stem_kernel=3)
    # Conv weights grow as width**2: a quarter of the width is about a sixteenth of the params.
    assert 11_173_962 / 17 < narrow < 11_173_962 / 15


@pytest.mark.parametrize(("stem", "num_classes", "size"), [("cifar", 10, 32), ("imagenet", 7, 64)])
def test_same_function_as_torchvision(stem: str, num_classes: int, size: int) -> None:
    torch.manual_seed(0)
    reference = torchvision_twin(stem, num_classes)
    randomise_batchnorm(reference)
    ours = resnet18(num_classes=num_classes, stem=stem)
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.eval()
    ours.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = reference(x)
        got = ours(x)
    assert expected.abs().max() > 1e-3  # a meaningful comparison, not zeros against zeros
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_shortcuts_identity_or_projection(stem: str) -> None:
    model = resnet18(stem=stem)
    assert all(block.downsample is None for block in model.layer1)
    for name, channels in (("layer2", 128), ("layer3", 256), ("layer4", 512)):
        first, second = getattr(model, name)
        assert second.downsample is None
        conv, bn = first.downsample
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        assert conv.kernel_size == (1, 1) and conv.stride == (2, 2) and conv.bias is None
        assert conv.out_channels == bn.num_features == channels
        assert first.conv1.stride == (2, 2) and second.conv1.stride == (1, 1)


def test_identity_shortcut_passes_input_through() -> None:
    # With zero_init_residual the residual branch outputs exactly zero, so an identity block maps
    # a non-negative input to itself; a projection block must change the shape instead.
    torch.manual_seed(0)
    model = resnet18(zero_init_residual=True).eval()
    x = torch.rand(2, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.layer1[0](x), x)
        assert model.layer2[0](x).shape == (2, 128, 4, 4)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = resnet18(num_classes=10).train()
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([3, 7]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_zero_init_residual() -> None:
    zeroed = resnet18(zero_init_residual=True)
    default = resnet18()
    blocks = [m for m in zeroed.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for b in blocks)
    assert all(torch.all(b.bn1.weight == 1) for b in blocks)
    assert all(torch.all(b.bn2.weight == 1) for b in default.modules() if isinstance(b, BasicBlock))


def test_kaiming_init() -> None:
    torch.manual_seed(0)
    model = resnet18()
    for conv in (model.layer3[0].conv2, model.layer4[1].conv1, model.layer4[0].downsample[0]):
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        expected = math.sqrt(2.0 / fan_out)  # He et al. 2015, "Delving Deep into Rectifiers"
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
        assert conv.weight.mean().item() == pytest.approx(0.0, abs=expected / 20)
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)


def test_grayscale_input_gives_helpful_error() -> None:
    model = resnet18(width=16)
    with pytest.raises(ValueError, match=r"3-channel.*\(N, 3, H, W\).*\(2, 1, 32, 32\).*grayscale"):
        model(torch.randn(2, 1, 32, 32))


def test_unbatched_input_gives_helpful_error() -> None:
    model = resnet18(width=16)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(3, 32, 32\).*unsqueeze"):
        model(torch.randn(3, 32, 32))


def test_bad_stem_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"'cifar'.*'imagenet'.*'resnet'"):
        resnet18(stem="resnet")
    with pytest.raises(ValueError, match="stem"):
        ResNet18(stem="CIFAR")
