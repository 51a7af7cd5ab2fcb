"""The ViT-Adapter of the release's PlainMamba detector (``PlainMamba(adapter=dict(...))``).

Release: github.com/ChenhongyiYang/PlainMamba ``downstream/mmdetection/mmdet/models/
backbones/{plain_mamba_adapter,adapter_modules}.py`` (after czczup/ViT-Adapter). A plain
stride-16 network gets a feature pyramid from a second, convolutional path:

* a spatial prior module (``spm``: conv stem with BN, maps c1..c4 at strides 4/8/16/32,
  1x1 convs to C; c2..c4 get a learned ``level_embed``) gives multi-scale tokens c;
* four interaction blocks, one per layer group (the PlainMamba taps): an injector
  (deformable attention of the plain tokens x on the 3 levels of c, scaled by ``gamma``,
  init 0), the group's PlainMamba layers on x, then an extractor (deformable attention of c
  on x, plus a ConvFFN with ratio 0.25); the last block has two extra extractors;
* c1 = ConvTranspose2d(c2) + c1; x is resized x4 / x2 / x1 / x0.5 (bilinear) and added;
  each level gets a BatchNorm (the backbone's ``out_norms.i``, the release's ``ad_norm<i+1>``).

Our keys: ``adapter.{level_embed,spm,interactions,up}`` (release: the same names at the top of
its ``PlainMambaAdapter``; :meth:`backbones.models.plainmamba.PlainMamba.convert_pretrained` maps).

The deformable attention is mmcv's ``MultiScaleDeformableAttention`` itself (same
parameters and computation as the release's ``MSDeformAttn``, which calls mmcv's
``MultiScaleDeformableAttnFunction``): mmcv runs its CUDA op on GPU and its pure-PyTorch
``multi_scale_deformable_attn_pytorch`` elsewhere. It runs in float32 under autocast (the
release's ``force_fp32``). The release has ``final_norm=False``: the classifier's ``ln1``
is not part of this model and is dropped from ImageNet checkpoints.

Inputs are zero-padded at the bottom / right to a multiple of 32 (the pyramid's level
sizes are h/8, h/16, h/32; mmdet pads to 32 anyway, so detection inputs are unchanged).
"""
import math
from functools import partial

import torch
import torch.nn.functional as F
from mmcv.ops import MultiScaleDeformableAttention
from timm.layers import DropPath
from torch import nn

from ..layers import LayerNorm

__all__ = ['ViTAdapter']

AdapterNorm = partial(LayerNorm, eps=1e-6)


class DeformAttn(MultiScaleDeformableAttention):
    """mmcv's multi-scale deformable attention returning the attention alone (no residual,
    no dropout), computed in float32."""

    def __init__(self, dim, num_heads, num_levels, num_points, ratio=1.0):
        super().__init__(embed_dims=dim, num_heads=num_heads, num_levels=num_levels,
                         num_points=num_points, dropout=0., batch_first=True,
                         value_proj_ratio=ratio)
        self.init_weights()

    def forward(self, query, value, reference_points, spatial_shapes, level_start_index):
        with torch.autocast(query.device.type, enabled=False):
            return super().forward(query.float(), value=value.float(),
                                   identity=query.new_zeros((), dtype=torch.float32),
                                   reference_points=reference_points,
                                   spatial_shapes=spatial_shapes,
                                   level_start_index=level_start_index)


def reference_points(shapes, device):
    """(1, sum HW, 1, 2) normalised (x, y) centres of every cell of the given grids."""
    refs = []
    for H, W in shapes:
        y, x = torch.meshgrid(torch.linspace(0.5, H - 0.5, H, device=device) / H,
                              torch.linspace(0.5, W - 0.5, W, device=device) / W,
                              indexing='ij')
        refs.append(torch.stack((x.reshape(-1), y.reshape(-1)), -1))
    return torch.cat(refs)[None, :, None]


def level_inputs(shapes, device):
    shapes = torch.as_tensor(shapes, dtype=torch.long, device=device)
    return shapes, torch.cat((shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]))


class ConvFFN(nn.Module):
    """fc1 -> one depthwise 3x3 on each of the three levels -> GELU -> fc2 (tokens)."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Module()  # keeps the release's key ``ffn.dwconv.dwconv``
        self.dwconv.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, shapes):
        x = self.fc1(x)
        parts = x.split([h * w for h, w in shapes], dim=1)
        x = torch.cat([self.dwconv.dwconv(p.transpose(1, 2).unflatten(2, s)).flatten(2)
                       .transpose(1, 2) for p, s in zip(parts, shapes)], dim=1)
        return self.fc2(self.act(x))


class Extractor(nn.Module):
    """c + attn(LN(c), LN(x)), then c + drop_path(ConvFFN(LN(c)))."""

    def __init__(self, dim, num_heads, num_points, ratio, cffn_ratio, drop_path):
        super().__init__()
        self.query_norm, self.feat_norm = AdapterNorm(dim), AdapterNorm(dim)
        self.attn = DeformAttn(dim, num_heads, 1, num_points, ratio)
        self.ffn = ConvFFN(dim, int(dim * cffn_ratio))
        self.ffn_norm = AdapterNorm(dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, c, x, inputs, shapes):
        c = c + self.attn(self.query_norm(c), self.feat_norm(x), *inputs).to(c.dtype)
        return c + self.drop_path(self.ffn(self.ffn_norm(c), shapes))


class Injector(nn.Module):
    """x + gamma * attn(LN(x), LN(c)), gamma initialised to 0."""

    def __init__(self, dim, num_heads, num_points, ratio, init_values=0.):
        super().__init__()
        self.query_norm, self.feat_norm = AdapterNorm(dim), AdapterNorm(dim)
        self.attn = DeformAttn(dim, num_heads, 3, num_points, ratio)
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x, c, inputs):
        return x + self.gamma * self.attn(self.query_norm(x), self.feat_norm(c), *inputs)


class InteractionBlock(nn.Module):
    def __init__(self, dim, num_heads, num_points, ratio, cffn_ratio, drop_path, extra):
        super().__init__()
        self.injector = Injector(dim, num_heads, num_points, ratio)
        self.extractor = Extractor(dim, num_heads, num_points, ratio, cffn_ratio, drop_path)
        self.extra_extractors = nn.Sequential(*[
            Extractor(dim, num_heads, num_points, ratio, cffn_ratio, drop_path)
            for _ in range(2)]) if extra else None


def _conv_bn_relu(cin, cout, stride):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.SyncBatchNorm(cout),
            nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """ResNet-like conv stem -> c1..c4 (strides 4/8/16/32), each 1x1-projected to C."""

    def __init__(self, inplanes, dim):
        super().__init__()
        p = inplanes
        self.stem = nn.Sequential(*_conv_bn_relu(3, p, 2), *_conv_bn_relu(p, p, 1),
                                  *_conv_bn_relu(p, p, 1), nn.MaxPool2d(3, 2, 1))
        self.conv2 = nn.Sequential(*_conv_bn_relu(p, 2 * p, 2))
        self.conv3 = nn.Sequential(*_conv_bn_relu(2 * p, 4 * p, 2))
        self.conv4 = nn.Sequential(*_conv_bn_relu(4 * p, 4 * p, 2))
        self.fc1, self.fc2 = nn.Conv2d(p, dim, 1), nn.Conv2d(2 * p, dim, 1)
        self.fc3, self.fc4 = nn.Conv2d(4 * p, dim, 1), nn.Conv2d(4 * p, dim, 1)

    def forward(self, x):
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return self.fc1(c1), self.fc2(c2), self.fc3(c3), self.fc4(c4)


class ViTAdapter(nn.Module):
    """Spatial prior module + one interaction block per PlainMamba layer group; turns the
    plain network into four pre-norm NCHW maps at strides 4/8/16/32, C channels each.

    Args:
        dim (int): the backbone's width C.
        num_groups (int): layer groups (the backbone's taps; the release: 4).
        drop_path (float): DropPath of every ConvFFN (the release passes the backbone's
            maximum drop_path_rate to all of them).
        conv_inplane (int): width of the spatial prior module (release: 64).
        deform_num_heads (int): heads of every deformable attention (release: 6 for L1 / L2,
            8 for L3).
        n_points (int): sampling points per head and level (release: 4).
        cffn_ratio (float): ConvFFN hidden ratio (release: 0.25).
        deform_ratio (float): value projection ratio (release: 1.0).
    """

    def __init__(self, dim, num_groups=4, drop_path=0., conv_inplane=64, deform_num_heads=6,
                 n_points=4, cffn_ratio=0.25, deform_ratio=1.0):
        super().__init__()
        self.level_embed = nn.Parameter(torch.empty(3, dim))
        self.spm = SpatialPriorModule(conv_inplane, dim)
        self.interactions = nn.Sequential(*[
            InteractionBlock(dim, deform_num_heads, n_points, deform_ratio, cffn_ratio,
                             drop_path, extra=i == num_groups - 1)
            for i in range(num_groups)])
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.apply(self._init_weights)
        for m in self.modules():
            if isinstance(m, DeformAttn):
                m.init_weights()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def _init_weights(m):
        # the release's ViT-Adapter init
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.modules.batchnorm._BatchNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x, embed, run_group):
        """``embed(img)`` -> NHWC stride-16 tokens; ``run_group(i, x)`` -> x after the layers
        of group i (the backbone's)."""
        x = F.pad(x, (0, -x.shape[-1] % 32, 0, -x.shape[-2] % 32))
        h, w = x.shape[-2:]
        shapes = [(h // 8, w // 8), (h // 16, w // 16), (h // 32, w // 32)]
        dev = x.device
        inj = (reference_points(shapes[1:2], dev), *level_inputs(shapes, dev))
        ext = (reference_points(shapes, dev), *level_inputs(shapes[1:2], dev))

        c1, c2, c3, c4 = self.spm(x)
        c = torch.cat([(ci.flatten(2).transpose(1, 2) + self.level_embed[i])
                       for i, ci in enumerate((c2, c3, c4))], dim=1)
        x = embed(x)
        B, H, W, C = x.shape
        for i, block in enumerate(self.interactions):
            x = block.injector(x.reshape(B, H * W, C), c, inj).view(B, H, W, C)
            x = run_group(i, x)
            xt = x.reshape(B, H * W, C)
            c = block.extractor(c, xt, ext, shapes)
            for extractor in block.extra_extractors or ():
                c = extractor(c, xt, ext, shapes)

        c2, c3, c4 = (ci.transpose(1, 2).reshape(B, C, *s)
                      for ci, s in zip(c.split([a * b for a, b in shapes], dim=1), shapes))
        c1 = self.up(c2) + c1
        x3 = x.permute(0, 3, 1, 2)
        return (c1 + F.interpolate(x3, scale_factor=4, mode='bilinear', align_corners=False),
                c2 + F.interpolate(x3, scale_factor=2, mode='bilinear', align_corners=False),
                c3 + x3,
                c4 + F.interpolate(x3, scale_factor=0.5, mode='bilinear', align_corners=False))
