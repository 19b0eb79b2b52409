"""Slow references written from the papers' formulas and the authors' code, with functional torch ops on a module's
own weights: the module's forward, its submodules' forwards and its reshapes are not reused, so a test comparing
the two fails when the module departs from the formula.

Layers of the plan (conv, instance norm, leaky ReLU) are computed from their definitions; attention with explicit
per-head loops and ``(N_q, N)`` weight matrices.
"""

import torch
import torch.nn.functional as F
from nnunet_attention.architectures.blocks.guided_attention import ChannelAttention, PositionAttention
from torch import nn

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def conv_reference(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A convolution layer as the functional op on its weight and bias (its stride, padding and groups)."""
    return CONV[x.ndim - 2](x, conv.weight, conv.bias, conv.stride, conv.padding, groups=conv.groups)


def transposed_conv_3x3_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                                  stride, tensorflow_same: bool = False) -> torch.Tensor:
    """The authors' ``Deconv3D(kernel 3, stride, 'same')``: the full transposed convolution (every input voxel's
    3-tap footprint, output ``(n - 1) * s + 3`` per axis) cropped to ``n * s`` voxels. PyTorch's alignment crops
    from voxel 1 (input ``i``'s centre tap on ``s * i``); TensorFlow's 'same' pads the equivalent forward conv
    only after the data when the padding is odd, so along an axis of stride 2 it crops from voxel 0 (centre tap
    on ``2i + 1``); along stride 1 both crop from 1."""
    full = CONV_TRANSPOSE[x.ndim - 2](x, weight, bias, tuple(stride))
    crop = [slice(0 if tensorflow_same and s == 2 else 1, None) for s in stride]
    crop = [slice(c.start, c.start + n * s) for c, n, s in zip(crop, x.shape[2:], stride)]
    return full[(slice(None), slice(None), *crop)]


def instance_norm_reference(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias``, mean and (biased) variance per case and channel."""
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axes, keepdim=True)
    variance = ((x - mean) ** 2).mean(axes, keepdim=True)
    per_channel = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean) / torch.sqrt(variance + norm.eps) * norm.weight.view(per_channel) + norm.bias.view(per_channel)


def layers_reference(layers: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A sequence of the plan's layers (conv, affine instance norm, leaky ReLU; nested sequences such as
    conv-norm-nonlin blocks), each from its definition; dropout is left out (evaluation)."""
    for layer in layers:
        if isinstance(layer, nn.Sequential):
            x = layers_reference(layer, x)
        elif isinstance(layer, nn.modules.conv._ConvNd) and not layer.transposed:
            x = conv_reference(layer, x)
        elif isinstance(layer, nn.modules.instancenorm._InstanceNorm) and layer.affine:
            x = instance_norm_reference(layer, x)
        elif isinstance(layer, nn.LeakyReLU):
            x = torch.where(x > 0, x, layer.negative_slope * x)
        elif not isinstance(layer, nn.modules.dropout._DropoutNd):
            raise TypeError(f"no reference for {type(layer).__name__}")
    return x


def aggregation_reference(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The Non-local U-Nets' ``multihead_attention_3d`` without dropout: q (1x1 conv, or the up-sampling block's
    transposed 3x3 conv), k, v (1x1 convs) of x; per head h, ``O_h = softmax(Q_h K_hᵀ / sqrt(C / heads)) V_h`` over
    all N input positions (keys and values unpooled), channels split into contiguous head groups; heads
    concatenated channel-wise, then the 1x1 output conv."""
    if block.query.transposed:
        query = transposed_conv_3x3_reference(x, block.query.weight, block.query.bias, block.query.stride)
    else:
        query = conv_reference(block.query, x)
    key, value = conv_reference(block.key, x), conv_reference(block.value, x)
    channels = query.shape[1]
    per_head = channels // block.heads
    outputs = []
    for h in range(block.heads):
        part = slice(h * per_head, (h + 1) * per_head)
        q = query[:, part].flatten(2).transpose(1, 2)  # (B, N_q, C/h)
        k = key[:, part].flatten(2).transpose(1, 2)  # (B, N, C/h)
        v = value[:, part].flatten(2).transpose(1, 2)
        weights = torch.softmax(q @ k.transpose(1, 2) * per_head ** -0.5, dim=-1)
        outputs.append((weights @ v).transpose(1, 2))
    attended = torch.cat(outputs, dim=1).reshape(query.shape)
    return conv_reference(block.output, attended)


def mca_2d_reference(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Shao et al. (the authors' ``Attention`` of ``MCANet.py``): x-path = Σ 1xk strips, y-path = Σ kx1 strips
    (depthwise, 'same' padding), both through project_out; row attention (H tokens of W·C/h features) with the
    y-path query over the x-path keys/values, column attention (W tokens of H·C/h) with the x-path query over the
    y-path; q, k L2-normalised; q added back; both through project_out, plus x."""
    b, c, h, w = x.shape
    heads = block.heads
    layer_norm = block.norm.norm
    normed = F.layer_norm(x.permute(0, 2, 3, 1), (c,), layer_norm.weight, layer_norm.bias,
                          layer_norm.eps).permute(0, 3, 1, 2)
    y_path = conv_reference(block.project_out, sum(conv_reference(strip, normed) for strip in block.strips[0]))
    x_path = conv_reference(block.project_out, sum(conv_reference(strip, normed) for strip in block.strips[1]))

    def rows(t):  # b (head c) h w -> b head h (w c)
        return t.view(b, heads, c // heads, h, w).permute(0, 1, 3, 4, 2).reshape(b, heads, h, w * c // heads)

    def columns(t):  # b (head c) h w -> b head w (h c)
        return t.view(b, heads, c // heads, h, w).permute(0, 1, 4, 3, 2).reshape(b, heads, w, h * c // heads)

    q1, k1, v1 = F.normalize(rows(y_path), dim=-1), F.normalize(rows(x_path), dim=-1), rows(x_path)
    q2, k2, v2 = F.normalize(columns(x_path), dim=-1), F.normalize(columns(y_path), dim=-1), columns(y_path)
    out3 = torch.softmax(q1 @ k1.transpose(-1, -2), -1) @ v1 + q1
    out4 = torch.softmax(q2 @ k2.transpose(-1, -2), -1) @ v2 + q2
    out3 = out3.view(b, heads, h, w, c // heads).permute(0, 1, 4, 2, 3).reshape(b, c, h, w)
    out4 = out4.view(b, heads, w, h, c // heads).permute(0, 1, 4, 3, 2).reshape(b, c, h, w)
    return conv_reference(block.project_out, out3) + conv_reference(block.project_out, out4) + x


def position_attention_reference(module: PositionAttention, x: torch.Tensor) -> torch.Tensor:
    """DANet's PAM (the authors' ``PAM_Module``): ``x + gamma * V softmax(QᵀK)ᵀ`` over all N positions, Q and K
    1x1 convs to C/8, V a 1x1 conv to C, scores unscaled."""
    q, k, v = (conv_reference(conv, x).flatten(2) for conv in (module.query, module.key, module.value))  # (B, C', N)
    attention = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, N, N)
    return module.gamma * (v @ attention.transpose(1, 2)).view_as(x) + x


def channel_attention_reference(module: ChannelAttention, x: torch.Tensor) -> torch.Tensor:
    """DANet's CAM (the authors' ``CAM_Module``): ``x + gamma * softmax(max(E) - E) X`` with ``E = X Xᵀ``
    (C x C) over the flattened positions."""
    flat = x.flatten(2)
    energy = flat @ flat.transpose(1, 2)
    attention = torch.softmax(energy.max(dim=-1, keepdim=True).values.expand_as(energy) - energy, dim=-1)
    return module.gamma * (attention @ flat).view_as(x) + x


def guided_attention_reference(scale: nn.Module, step_input: torch.Tensor,
                               reconstruction: torch.Tensor) -> torch.Tensor:
    """One scale of one guided-attention step (the authors' ``DAF_stack``): ``A_s = conv1x1((PAM_CAM(x, PAM) +
    PAM_CAM(x, CAM)) * conv_sem(reconstruction))``, ``PAM_CAM`` = conv-norm-nonlin to C, the attention module,
    conv-norm-nonlin (the authors' ``PAM_CAM_Layer``, with the plan's norm and nonlinearity)."""

    def pam_cam_layer(layer: nn.Module, attention) -> torch.Tensor:
        reduced = layers_reference(layer.reduce, step_input)
        return layers_reference(layer.refine, attention(layer.attention, reduced))

    position = pam_cam_layer(scale.position, position_attention_reference)
    channel = pam_cam_layer(scale.channel, channel_attention_reference)
    return conv_reference(scale.combine, (position + channel) * conv_reference(scale.semantic, reconstruction))
