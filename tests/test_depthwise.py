"""The depthwise convolutions of ``blocks/depthwise.py`` equal the ``nn.ConvNd`` modules whose parameters they use,
in float64, forward and every gradient: MCA's strips of one axis as one convolution with the summed kernel, on
the CPU's 2D-view path, and a 3D depthwise kernel as depth-shifted 2D ones."""

import pytest
import torch
from nnunet_attention.architectures.blocks.depthwise import DepthwiseConv3d, depthwise_strip, summed_strips
from torch import nn

TOLERANCE = {"rtol": 0, "atol": 1e-10}


def gradients(output: torch.Tensor, upstream: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad((output * upstream).sum(), inputs))


def strips_along(axis: int, spatial_dims: int, channels: int) -> nn.ModuleList:
    """MCA's three strips (7, 11, 21 taps) along ``axis``, 'same'-padded, random weights and biases."""
    conv_op = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    strips = nn.ModuleList()
    for length in (7, 11, 21):
        kernel = tuple(length if a == axis else 1 for a in range(spatial_dims))
        strips.append(conv_op(channels, channels, kernel, padding=tuple((k - 1) // 2 for k in kernel),
                              groups=channels))
    for parameter in strips.parameters():
        nn.init.normal_(parameter)
    return strips.double()


@pytest.mark.parametrize("size", [(9, 13), (4, 30), (1, 5), (3, 8, 12), (12, 2, 5)], ids=str)
def test_summed_strips_equal_the_sum_of_the_strip_convolutions(size):
    """Every axis, grids shorter and longer than the strips (taps beyond the grid are left out): the same output
    and the same gradients for the input and for each strip's own weight and bias."""
    torch.manual_seed(0)
    for axis in range(len(size)):
        strips = strips_along(axis, len(size), channels=3)
        x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
        upstream = torch.randn(2, 3, *size, dtype=torch.float64)
        parameters = [x, *strips.parameters()]
        expected = sum(strip(x) for strip in strips)
        got = depthwise_strip(x, *summed_strips(strips), axis)
        torch.testing.assert_close(got, expected, **TOLERANCE)
        for got_gradient, expected_gradient in zip(gradients(got, upstream, parameters),
                                                   gradients(expected, upstream, parameters)):
            torch.testing.assert_close(got_gradient, expected_gradient, **TOLERANCE)


@pytest.mark.parametrize("kernel, depth", [((3, 3, 3), 6), ((3, 3, 3), 1), ((5, 3, 1), 2), ((1, 3, 3), 4)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_depthwise_conv3d_equals_conv3d(kernel, depth, bias):
    torch.manual_seed(0)
    padding = tuple((k - 1) // 2 for k in kernel)
    reference = nn.Conv3d(4, 4, kernel, padding=padding, groups=4, bias=bias).double()
    fast = DepthwiseConv3d(4, 4, kernel, padding=padding, groups=4, bias=bias).double()
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(2, 4, depth, 7, 5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 4, depth, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(fast(x), reference(x), **TOLERANCE)
    for got, expected in zip(gradients(fast(x), upstream, [x, *fast.parameters()]),
                             gradients(reference(x), upstream, [x, *reference.parameters()])):
        torch.testing.assert_close(got, expected, **TOLERANCE)


def test_depthwise_conv3d_refuses_what_it_does_not_compute():
    with pytest.raises(ValueError, match="depthwise 'same' convolutions of odd kernels at stride 1; got 4 -> 8"):
        DepthwiseConv3d(4, 8, 3, padding=1, groups=4)
    with pytest.raises(ValueError, match="stride \\(2, 2, 2\\)"):
        DepthwiseConv3d(4, 4, 3, stride=2, padding=1, groups=4)


def test_the_planners_fake_tensors_take_the_plain_forms_that_a_gpu_computes():
    """The memory estimate runs on fake CPU tensors but models a GPU run: the CPU forms are for real CPU tensors
    only. Seen through the resizing, whose CPU form leaves its output channels-last."""
    from nnunet_attention.architectures.blocks.cpu_kernels import computed_on_cpu
    from nnunet_attention.architectures.blocks.interpolation import resize_linear
    from torch._subclasses.fake_tensor import FakeTensorMode

    real = torch.randn(1, 4, 5, 6)
    assert computed_on_cpu(real)
    assert resize_linear(real, (10, 12)).is_contiguous(memory_format=torch.channels_last)
    with FakeTensorMode():
        fake = torch.randn(1, 4, 5, 6)
        assert not computed_on_cpu(fake)
        assert resize_linear(fake, (10, 12)).is_contiguous()
