"""DCNv3, the deformable convolution of InternImage, in pure PyTorch (``F.grid_sample``).

Paper: `InternImage: Exploring Large-Scale Vision Foundation Models with Deformable
Convolutions` (Wang et al., CVPR 2023, https://arxiv.org/abs/2211.05778), Eq. (3)-(4); the
semantics below are those of the release's CUDA kernel (OpenGVLab/InternImage
``ops_dcnv3/src/cuda/dcnv3_im2col_cuda.cuh``), which trained the released weights, and of its
own pure-PyTorch reference (``ops_dcnv3/functions/dcnv3_func.py``, ``dcnv3_core_pytorch``).

For output position (ho, wo), group g and kernel point p = i * kernel_h + j (i runs over
the kernel's columns, j over its rows), with c = dilation * (kernel - 1) // 2::

    y[ho, wo, g] = sum_p mask[ho, wo, g, p] * bilinear(x[..., g], h_p, w_p)
    w_p = wo * stride - pad + c + offset_scale * (i * dilation - c + offset_x[ho, wo, g, p])
    h_p = ho * stride - pad + c + offset_scale * (j * dilation - c + offset_y[ho, wo, g, p])

in pixel coordinates of the unpadded map, reading zero outside it. ``offset`` holds
(x, y) pairs, group-major: ``offset[..., 2 * (g * P + p) + {0: x, 1: y}]``; ``mask`` holds
``mask[..., g * P + p]`` (InternImage softmaxes it over the P points of each group).
Note that ``offset_scale`` also scales the kernel's own grid (both the CUDA kernel and the
release's reference do this); with the released ``offset_scale=1.0`` it is a plain DCN.

Why grid_sample: its bilinear kernel with ``padding_mode='zeros'`` is exactly the sampling
above, it runs on every device, and autograd gives the gradients for the input, the offsets
and the mask. Sampling and the weighted sum run in float32 (float64 stays float64) whatever
autocast says, as the CUDA kernel accumulates in float; the result comes back in the input's
dtype. The release's CUDA extension is not a dependency.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..layers import LayerNorm

__all__ = ['dcnv3', 'DCNv3']


def _pair(value, name):
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise ValueError(f'dcnv3: {name} must be an int or a pair of ints, got {value!r}')
    return pair


def _out_size(size, kernel, stride, pad, dilation):
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def dcnv3(x, offset, mask, kernel_size=3, stride=1, pad=1, dilation=1, group=1,
          offset_scale=1.0):
    """The DCNv3 core: deformable, mask-weighted sum of bilinear samples, channels-last.

    Args:
        x: (N, H, W, C) input; C = group * channels per group.
        offset: (N, Ho, Wo, group * P * 2) sampling offsets in pixels, (x, y) pairs.
        mask: (N, Ho, Wo, group * P) weight of each point (not normalised here).
        kernel_size, stride, pad, dilation: ints or (h, w) pairs, as a convolution's.
        group (int): channel groups, each with its own offsets and mask.
        offset_scale (float): scale of the offsets and of the kernel grid (see module doc).

    Returns:
        (N, Ho, Wo, C) in ``x``'s dtype.
    """
    (kh, kw), (sh, sw) = _pair(kernel_size, 'kernel_size'), _pair(stride, 'stride')
    (ph, pw), (dh, dw) = _pair(pad, 'pad'), _pair(dilation, 'dilation')
    if x.dim() != 4:
        raise ValueError(f'dcnv3: x must be (N, H, W, C), got shape {tuple(x.shape)}')
    N, H, W, C = x.shape
    if not (isinstance(group, int) and group > 0 and C % group == 0):
        raise ValueError(f'dcnv3: group must be a positive int dividing C={C}, got {group!r}')
    P = kh * kw
    Ho, Wo = _out_size(H, kh, sh, ph, dh), _out_size(W, kw, sw, pw, dw)
    if (tuple(offset.shape) != (N, Ho, Wo, group * P * 2)
            or tuple(mask.shape) != (N, Ho, Wo, group * P)):
        raise ValueError(
            f'dcnv3: for x {tuple(x.shape)}, kernel {(kh, kw)}, stride {(sh, sw)}, pad '
            f'{(ph, pw)}, dilation {(dh, dw)} and group {group} expected offset '
            f'{(N, Ho, Wo, group * P * 2)} and mask {(N, Ho, Wo, group * P)}, got '
            f'{tuple(offset.shape)} and {tuple(mask.shape)}')
    dtype = x.dtype
    ctype = torch.promote_types(torch.promote_types(dtype, offset.dtype), torch.float32)
    with torch.autocast(x.device.type, enabled=False):
        x, offset, mask = x.to(ctype), offset.to(ctype), mask.to(ctype)
        ch, cw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
        # kernel points, column-major as the CUDA kernel's loops (i over columns outer)
        kx = (torch.arange(kw, device=x.device, dtype=ctype) * dw - cw).repeat_interleave(kh)
        ky = (torch.arange(kh, device=x.device, dtype=ctype) * dh - ch).repeat(kw)
        cx = torch.arange(Wo, device=x.device, dtype=ctype) * sw - pw + cw
        cy = torch.arange(Ho, device=x.device, dtype=ctype) * sh - ph + ch
        off = offset.view(N, Ho, Wo, group, P, 2)
        loc_x = cx.view(1, 1, Wo, 1, 1) + offset_scale * (kx + off[..., 0])
        loc_y = cy.view(1, Ho, 1, 1, 1) + offset_scale * (ky + off[..., 1])
        # pixel -> grid_sample's [-1, 1] (align_corners=False: pixel centres at i + 0.5)
        grid = torch.stack(((2 * loc_x + 1) / W - 1, (2 * loc_y + 1) / H - 1), dim=-1)
        grid = grid.permute(0, 3, 1, 2, 4, 5).reshape(N * group, Ho * Wo, P, 2)
        value = x.view(N, H * W, group, C // group).permute(0, 2, 3, 1)
        value = value.reshape(N * group, C // group, H, W)
        sampled = F.grid_sample(value, grid, mode='bilinear', padding_mode='zeros',
                                align_corners=False)                    # (NG, Cg, HoWo, P)
        weight = mask.view(N, Ho * Wo, group, P).transpose(1, 2).reshape(N * group, 1,
                                                                          Ho * Wo, P)
        out = (sampled * weight).sum(-1)                                # (NG, Cg, HoWo)
        out = out.view(N, C, Ho, Wo).permute(0, 2, 3, 1)
    return out.to(dtype)


class DCNv3(nn.Module):
    """InternImage's DCNv3 token mixer on NHWC maps (same size in and out).

    value = input_proj(x); a depthwise conv -> LN -> GELU branch on x gives the offsets
    (``offset``, Linear to group * K * K * 2) and the point weights (``mask``, Linear to
    group * K * K, softmaxed per group); the core (:func:`dcnv3`, stride 1, 'same' padding)
    samples the value, and ``output_proj`` mixes the groups.

    Args:
        channels (int): channels in and out.
        group (int): groups of the deformable sampling; must divide ``channels``.
        kernel_size (int): odd kernel of the sampling grid (3 in InternImage).
        dilation (int): dilation of the sampling grid.
        offset_scale (float): scale of offsets (and grid), 1.0 in InternImage.
        dw_kernel_size (int, optional): kernel of the depthwise conv; default kernel_size.
        norm_eps (float): eps of the LayerNorm after the depthwise conv.
    """

    def __init__(self, channels, group, kernel_size=3, dilation=1, offset_scale=1.0,
                 dw_kernel_size=None, norm_eps=1e-6):
        super().__init__()
        dw_kernel_size = kernel_size if dw_kernel_size is None else dw_kernel_size
        for name, v in (('channels', channels), ('group', group), ('kernel_size', kernel_size),
                        ('dilation', dilation), ('dw_kernel_size', dw_kernel_size)):
            if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                raise ValueError(f'DCNv3: {name} must be a positive int, got {v!r}')
        if channels % group:
            raise ValueError(f'DCNv3: channels ({channels}) must be divisible by group '
                             f'({group})')
        if kernel_size % 2 == 0 or dw_kernel_size % 2 == 0:
            raise ValueError(f'DCNv3: kernel_size and dw_kernel_size must be odd (same-size '
                             f'output), got {kernel_size} and {dw_kernel_size}')
        self.channels, self.group, self.kernel_size = channels, group, kernel_size
        self.dilation, self.offset_scale = dilation, offset_scale
        self.pad = dilation * (kernel_size - 1) // 2
        points = group * kernel_size * kernel_size
        self.dw_conv = nn.Conv2d(channels, channels, dw_kernel_size,
                                 padding=(dw_kernel_size - 1) // 2, groups=channels)
        self.dw_norm = LayerNorm(channels, eps=norm_eps)
        self.dw_act = nn.GELU()
        self.offset = nn.Linear(channels, points * 2)
        self.mask = nn.Linear(channels, points)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self):
        # as the release: the module starts as a regular (undeformed, uniform-mask) conv
        for layer in (self.offset, self.mask):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        for layer in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        N, H, W, _ = x.shape
        value = self.input_proj(x)
        q = self.dw_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        q = self.dw_act(self.dw_norm(q))
        mask = self.mask(q).view(N, H, W, self.group, -1)
        mask = mask.to(torch.promote_types(mask.dtype, torch.float32)).softmax(-1)
        y = dcnv3(value, self.offset(q), mask.view(N, H, W, -1), self.kernel_size, 1,
                  self.pad, self.dilation, self.group, self.offset_scale)
        return self.output_proj(y)

    def extra_repr(self):
        return (f'channels={self.channels}, group={self.group}, kernel_size='
                f'{self.kernel_size}, dilation={self.dilation}, offset_scale='
                f'{self.offset_scale}')
