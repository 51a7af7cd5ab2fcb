"""HorNet backbones (GF variants) for dense prediction (mmdet + mmseg).

Paper: `HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions`
(Rao et al., NeurIPS 2022, https://arxiv.org/abs/2207.14284) and its release
(github.com/raoyongming/HorNet @ ac9e210: ``hornet.py`` for ImageNet,
``semantic_segmentation/models/hornet.py`` and ``configs/hornet/*_gf_*`` for UperNet), which
fix everything below.

A ConvNeXt-like 4-stage network (4x4/s4 conv stem + LN; LN + 2x2/s2 conv between stages)
of blocks ``x + gamma1 * gnconv(LN(x))``, ``x + gamma2 * MLP(LN(x))``. ``gnconv`` of order n
(2, 3, 4, 5 by stage) projects to 2C channels, runs one depthwise operator over all but the
first C / 2^(n-1) of them and gates recursively through 1x1 convs. The depthwise operator is
a 7x7 conv in stages 1-2 and, in stages 3-4 of the GF models, a global-local filter: half
the channels through a 3x3 depthwise conv, half multiplied by a learned filter
(``complex_weight``) in the 2-D Fourier domain, the halves interleaved channel by channel.

Filter sizes: the ImageNet models (the ``*-gf`` archs here, as the release's
``hornet_*_gf`` and mmpretrain's) use 14x8 / 7x4; the release's UperNet configs build
24x13 / 12x7 (``gf_sizes`` here), its Cascade Mask R-CNN configs the ImageNet sizes. A
filter of another size is resized bilinearly (align_corners) twice, as the release does: at
load, to the model's size, and at run time, to the spectrum of the input map.

Why not mmpretrain's ``HorNet``: mmpretrain is not in the stack, its ``*-gf`` archs have the
ImageNet filter sizes only and rename keys. Its key names load here (``gnconv.projs.k``,
``gammaN.weight``), and so do the release's ImageNet checkpoints and the backbone part of
its UperNet checkpoints (:meth:`HorNet.convert_pretrained`).

The release casts the Fourier half to fp32 before ``rfft2``; here the whole filter runs in
fp32 with autocast off (cuFFT in half precision takes power-of-two sizes only), and the
LayerNorms compute in fp32 (:class:`backbones.layers.LayerNorm`).

Also here: :class:`HorNetLayerDecayOptimWrapperConstructor`, the release's stage-wise lr
decay on this module's key names (mmseg's ``LearningRateDecayOptimizerConstructor`` only
serves classes named ConvNeXt / BEiT / MAE and the ConvNeXt key names).
"""
import re
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from ..engine.log import print_log
from ..layers import LayerNorm, run_blocks, stage_drop_path_rates
from .base import DenseBackbone, check_common_args, positive_ints
from .lr_decay import LayerDecayOptimWrapperConstructor
from .registry import register_backbone, register_optim_constructor

__all__ = ['HorNet']

NormLayer = partial(LayerNorm, eps=1e-6)  # every LN of the release has eps 1e-6
IMAGENET_GF_SIZES = (None, None, (14, 8), (7, 4))
SEG_GF_SIZES = (None, None, (24, 13), (12, 7))  # the release's UperNet configs


class LayerNorm2d(LayerNorm):
    """fp32 LayerNorm over the channels of an NCHW map (the release's ``channels_first``)."""

    def __init__(self, dim, eps=1e-6):
        super().__init__(dim, eps=eps)

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def resize_filter(weight, size):
    """A ``(C, h, w, 2)`` filter bilinearly resized to ``size`` (align_corners, as the
    release's loader and forward)."""
    return F.interpolate(weight.permute(3, 0, 1, 2), size=tuple(size), mode='bilinear',
                         align_corners=True).permute(1, 2, 3, 0)


class GlobalLocalFilter(nn.Module):
    """Depthwise 3x3 on the first half of the channels, a global filter on the second half,
    interleaved (local_0, global_0, local_1, ...) between two LNs; NCHW."""

    def __init__(self, dim, size):
        super().__init__()
        half = dim // 2
        self.dw = nn.Conv2d(half, half, 3, padding=1, bias=False, groups=half)
        self.complex_weight = nn.Parameter(torch.empty(half, *size, 2))
        nn.init.trunc_normal_(self.complex_weight, std=.02)
        self.pre_norm = LayerNorm2d(dim)
        self.post_norm = LayerNorm2d(dim)

    def forward(self, x):
        dtype = x.dtype
        local, spectral = self.pre_norm(x).chunk(2, dim=1)
        y = torch.stack((self.dw(local).float(), self.global_filter(spectral)), dim=2)
        y = y.flatten(1, 2)
        if not torch.is_autocast_enabled(x.device.type):
            y = y.to(dtype)  # a model cast to bf16 stays bf16; under autocast fp32 as the LNs
        return self.post_norm(y)

    def global_filter(self, x):
        H, W = x.shape[-2:]
        with torch.autocast(x.device.type, enabled=False):
            spec = torch.fft.rfft2(x.float(), dim=(2, 3), norm='ortho')
            weight = self.complex_weight.float()
            if weight.shape[1:3] != spec.shape[2:4]:
                weight = resize_filter(weight, spec.shape[2:4])
            spec = spec * torch.view_as_complex(weight.contiguous())
            return torch.fft.irfft2(spec, s=(H, W), dim=(2, 3), norm='ortho')


class GnConv(nn.Module):
    """Recursive gated convolution of order ``order`` (g^n conv), NCHW: widths C/2^(n-1),
    ..., C/2, C; ``dwconv`` is a 7x7 depthwise conv or, with ``gf_size``, a
    :class:`GlobalLocalFilter`; its output is scaled by ``scale`` (1/3 in every release)."""

    def __init__(self, dim, order, gf_size=None, scale=1 / 3):
        super().__init__()
        self.dims = tuple(dim // 2 ** i for i in range(order))[::-1]
        total = sum(self.dims)
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        self.dwconv = GlobalLocalFilter(total, gf_size) if gf_size else \
            nn.Conv2d(total, total, 7, padding=3, groups=total)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.pws = nn.ModuleList(nn.Conv2d(a, b, 1) for a, b in zip(self.dims, self.dims[1:]))
        self.scale = scale

    def forward(self, x):
        x, rest = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)), dim=1)
        gates = torch.split(self.dwconv(rest) * self.scale, self.dims, dim=1)
        x = x * gates[0]
        for pw, gate in zip(self.pws, gates[1:]):
            x = pw(x) * gate
        return self.proj_out(x)


class HorNetBlock(nn.Module):
    """gnconv and MLP (ratio 4) residual branches, each with layer scale; NCHW."""

    def __init__(self, dim, order, gf_size=None, scale=1 / 3, drop_path=0.,
                 layer_scale_init=1e-6):
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.gnconv = GnConv(dim, order, gf_size, scale)
        self.norm2 = NormLayer(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma1 = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.gamma2 = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.gamma1[:, None, None] * self.gnconv(self.norm1(x)))
        y = self.pwconv2(self.act(self.pwconv1(self.norm2(x.permute(0, 2, 3, 1)))))
        return x + self.drop_path((self.gamma2 * y).permute(0, 3, 1, 2))


class HorNetStage(nn.Module):
    """Optional downsampling (LN, 2x2/s2 conv), then HorNet blocks; NCHW in and out."""

    def __init__(self, in_chs, out_chs, depth, drop_path_rates, downsample=True,
                 **block_args):
        super().__init__()
        self.downsample = nn.Sequential(LayerNorm2d(in_chs),
                                        nn.Conv2d(in_chs, out_chs, 2, stride=2)) \
            if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[HorNetBlock(out_chs, drop_path=drop_path_rates[j],
                                                  **block_args) for j in range(depth)])

    def forward(self, x, with_cp=False):
        return run_blocks(self.blocks, self.downsample(x), with_cp)


class _ConvertPretrained:
    """``HorNet.convert_pretrained(sd)`` maps key names only (the filters keep the size they
    were stored with; what tools/convert_checkpoint.py writes); ``model.convert_pretrained(sd)``
    (what ``init_weights`` calls) also resizes the GF filters to the model's sizes, as the
    release's loader does."""

    def __get__(self, obj, cls=None):
        return _convert_keys if obj is None else obj._convert_and_fit


@register_backbone
class HorNet(DenseBackbone):
    """HorNet backbone returning NCHW features at strides 4/8/16/32.

    Args:
        arch (str | dict): ``tiny-gf``, ``small-gf``, ``base-gf`` (the ImageNet models) or
            ``dict(base_dim, depths, orders, gf_sizes)``: stage widths base_dim * 2^i, blocks
            and gnconv order per stage, and per stage ``None`` (7x7 depthwise conv) or the
            ``(h, w)`` of its global filter.
        in_channels (int): input image channels.
        out_indices (Sequence[int]): stages whose outputs are returned.
        gf_sizes (Sequence | None): the arch's filter sizes replaced (same stages must have
            a filter), e.g. ``(None, None, (24, 13), (12, 7))`` as the release's UperNet
            configs; pretrained filters of another size are resized at load.
        scale (float): scale of the depthwise operator's output in gnconv (1/3).
        layer_scale_init (float): initial value of gamma1 / gamma2.
        drop_path_rate (float): stochastic depth of the last block, rising linearly from 0.
        frozen_stages (int): freeze the stem and stages ``< frozen_stages`` (-1: none).
        norm_eval (bool): accepted for config compatibility (HorNet has no BatchNorm).
        with_cp (bool | Sequence[bool]): activation checkpointing of every block.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=..., prefix=...)``:
            the release's ImageNet checkpoint, mmpretrain's, or (``prefix='backbone.'``) a
            released UperNet checkpoint, loaded strictly.
    """

    arch_dict_help = 'dict(base_dim=..., depths=..., orders=..., gf_sizes=...)'
    arch_zoo = {
        'tiny-gf': dict(base_dim=64, depths=(2, 3, 18, 2), orders=(2, 3, 4, 5),
                        gf_sizes=IMAGENET_GF_SIZES),
        'small-gf': dict(base_dim=96, depths=(2, 3, 18, 2), orders=(2, 3, 4, 5),
                         gf_sizes=IMAGENET_GF_SIZES),
        'base-gf': dict(base_dim=128, depths=(2, 3, 18, 2), orders=(2, 3, 4, 5),
                        gf_sizes=IMAGENET_GF_SIZES),
    }
    convert_pretrained = _ConvertPretrained()

    def __init__(self, arch='tiny-gf', in_channels=3, out_indices=(0, 1, 2, 3), gf_sizes=None,
                 scale=1 / 3, layer_scale_init=1e-6, drop_path_rate=0., frozen_stages=-1,
                 norm_eval=False, with_cp=False, init_cfg=None):
        base_dim, depths, orders, arch_sizes = self._parse_arch(arch)
        gf_sizes = arch_sizes if gf_sizes is None else _check_gf_override(gf_sizes, arch_sizes)
        dims = tuple(base_dim * 2 ** i for i in range(len(depths)))
        check_common_args('HorNet', in_channels, drop_path_rate)
        _check_dims(dims, orders, gf_sizes)
        super().__init__(len(depths), out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        self.depths, self.dims, self.orders, self.gf_sizes = depths, dims, orders, gf_sizes

        self.stem = nn.Sequential(nn.Conv2d(in_channels, dims[0], 4, stride=4),
                                  LayerNorm2d(dims[0]))
        dpr = stage_drop_path_rates(drop_path_rate, depths)
        self.stages = nn.ModuleList(
            HorNetStage(dims[i - 1] if i else dims[0], dims[i], depths[i], dpr[i],
                        downsample=i > 0, order=orders[i], gf_size=gf_sizes[i], scale=scale,
                        layer_scale_init=layer_scale_init)
            for i in range(len(depths)))
        self._build_out_norms(dims, NormLayer)

        self.apply(self._init_weights)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        arch = cls.lookup_arch(arch)
        keys = {'base_dim', 'depths', 'orders', 'gf_sizes'}
        if set(arch) != keys:
            raise ValueError(f'HorNet: arch dict needs exactly the keys {sorted(keys)}, got '
                             f'{sorted(arch)}')
        depths, orders = tuple(arch['depths']), tuple(arch['orders'])
        base_dim = arch['base_dim']
        if not positive_ints(depths + orders + (base_dim,)) \
                or len(orders) != len(depths):
            raise ValueError(f'HorNet: arch base_dim, depths and orders must be positive ints, '
                             f'one order per stage, got base_dim={base_dim!r}, '
                             f'depths={depths}, orders={orders}')
        return base_dim, depths, orders, _check_gf_sizes(arch['gf_sizes'], len(depths))

    @staticmethod
    def _init_weights(m):
        # as the release: truncated normal for conv / linear, zero bias (filters: __init__)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---- DenseBackbone hooks --------------------------------------------------------
    def stage_modules(self, i):
        return [self.stages[i], self.out_norms[i]]

    def _convert_and_fit(self, state_dict):
        out, own = _convert_keys(state_dict), self.state_dict()
        for key, value in out.items():
            target = own.get(key)  # (C, h, w, 2): same C and real/imag, another (h, w)
            if key.endswith('complex_weight') and target is not None and value.dim() == 4 \
                    and value.shape[::3] == target.shape[::3] \
                    and value.shape[1:3] != target.shape[1:3]:
                print_log(f'HorNet: resizing {key} from {tuple(value.shape)} to '
                          f'{tuple(target.shape)}', logger='current')
                out[key] = resize_filter(value.float(), target.shape[1:3]).contiguous()
        return out

    # ---- forward --------------------------------------------------------------------
    def _run_stages(self, x):
        x = self.stem(x)
        for i, stage in enumerate(self.stages[:self.out_indices[-1] + 1]):  # skip unused
            x = stage(x, with_cp=self.with_cp[i])
            if i in self.out_indices:
                yield i, x.permute(0, 2, 3, 1)


# ---- checkpoints -----------------------------------------------------------------------
_GAMMA = re.compile(r'\.(gamma[12])\.weight$')  # mmpretrain's LayerScale


def _convert_keys(state_dict):
    """The release's / mmpretrain's key names as this module's: ``downsample_layers.0`` ->
    ``stem``, ``downsample_layers.N`` -> ``stages.N.downsample``, ``stages.S.B`` ->
    ``stages.S.blocks.B``, ``norm<i>`` (dense output norms) -> ``out_norms.<i>``,
    ``gnconv.projs`` -> ``gnconv.pws``, ``gammaN.weight`` -> ``gammaN``; the ImageNet
    classifier (``norm``, ``head``) dropped. Our own keys come back unchanged; keys of no
    known layout pass through for the strict loader to name."""
    out = {}
    for key, value in state_dict.items():
        parts = key.split('.')
        if parts[0] == 'head' or key in ('norm.weight', 'norm.bias'):
            continue
        if parts[0] == 'downsample_layers' and len(parts) > 2 and parts[1].isdigit():
            n = int(parts[1])
            parts = (['stem'] if n == 0 else ['stages', parts[1], 'downsample']) + parts[2:]
        elif parts[0] == 'stages' and len(parts) > 2 and parts[2].isdigit():
            parts = parts[:2] + ['blocks'] + parts[2:]
        elif re.fullmatch(r'norm\d+', parts[0]):
            parts = ['out_norms', parts[0][4:]] + parts[1:]
        key = _GAMMA.sub(r'.\1', '.'.join(parts).replace('.gnconv.projs.', '.gnconv.pws.'))
        out[key] = value
    return out


# ---- argument checks -------------------------------------------------------------------
def _is_size(s):
    return isinstance(s, (tuple, list)) and len(s) == 2 and positive_ints(tuple(s))


def _check_gf_sizes(gf_sizes, num_stages):
    if not (isinstance(gf_sizes, (tuple, list)) and len(gf_sizes) == num_stages
            and all(s is None or _is_size(s) for s in gf_sizes)):
        raise ValueError(f'HorNet: gf_sizes must give, for each of the {num_stages} stages, '
                         f'None (7x7 depthwise conv) or the (h, w) of its global filter, '
                         f'got {gf_sizes!r}')
    return tuple(None if s is None else tuple(s) for s in gf_sizes)


def _check_gf_override(gf_sizes, arch_sizes):
    sizes = _check_gf_sizes(gf_sizes, len(arch_sizes))
    if [s is None for s in sizes] != [s is None for s in arch_sizes]:
        raise ValueError(f'HorNet: gf_sizes {gf_sizes!r} changes which stages have a global '
                         f'filter (arch: {arch_sizes}); it may only change their sizes (use '
                         f'a dict arch for another layout)')
    return sizes


def _check_dims(dims, orders, gf_sizes):
    for i, (dim, order, gf) in enumerate(zip(dims, orders, gf_sizes)):
        # gnconv halves the width order - 1 times; the filter splits its input in two
        need = 2 ** order if gf else 2 ** (order - 1)
        if dim % need:
            raise ValueError(f'HorNet: stage {i} width {dim} must be divisible by {need} '
                             f'(gnconv order {order}{", global filter" if gf else ""})')


# ---- optimizer: the release's stage-wise lr decay --------------------------------------
_DOWNSAMPLE = re.compile(r'backbone\.(stem|stages\.\d+\.downsample)\.')
_BLOCKS = re.compile(r'backbone\.stages\.(\d+)\.blocks\.')


def stage_wise_layer_id(name, num_layers):
    """Layer of parameter ``name`` (of a detector / segmentor) in the release's stage-wise
    rule (``get_num_layer_stage_wise``), with ``num_layers`` the config's value + 2: stem and
    downsampling 0, blocks of stage i i + 1, everything else num_layers - 1."""
    if _DOWNSAMPLE.match(name):
        return 0
    m = _BLOCKS.match(name)
    return int(m.group(1)) + 1 if m else num_layers - 1


if LayerDecayOptimWrapperConstructor is not None:  # the training stack is installed
    @register_optim_constructor
    class HorNetLayerDecayOptimWrapperConstructor(LayerDecayOptimWrapperConstructor):
        """The HorNet release's ``LearningRateDecayOptimizerConstructorHorNet`` with
        ``decay_type='stage_wise'`` (its UperNet configs), on :class:`HorNet`'s key names:
        ``paramwise_cfg=dict(decay_rate=r, decay_type='stage_wise', num_layers=n)``, layers by
        :func:`stage_wise_layer_id` (:mod:`backbones.engine.optim` has the rule)."""
        fixed = {'decay_type': 'stage_wise'}
        layer_id = staticmethod(stage_wise_layer_id)

    __all__.append('HorNetLayerDecayOptimWrapperConstructor')
