"""EfficientVMamba backbones (tiny / small / base) for dense prediction (mmdet + mmseg).

Paper: `EfficientVMamba: Atrous Selective Scan for Light Weight Visual Mamba` (Pei et al.,
2024, https://arxiv.org/abs/2403.09977) and its public release (github.com/TerryPei/
EfficientVMamba @ 0bc5ee2: ``classification/models/vmamba_efficient.py``,
``classification/lib/models/operations.py``, ``detection/model.py``, the
``vssm_efficient_*.yaml`` configs and the training logs). A hybrid network:

* stem: 4x4/s4 conv + LN (the release's conv drops the last H % 4 rows / W % 4 columns);
* stages 1-2, EVSS blocks (no MLP)::

      y = LN(x);  x + drop_path(SE(ES2D(y)) + SE(ConvBranch(y)))

  ES2D is VMamba's SS2D (in_proj to 2 x 2C with a SiLU(z) gate, biased dw3x3 + SiLU,
  d_state 16, ssm_ratio 2, dt_rank ceil(C/16), out LN) whose four routes are the four
  phases of the 2x2 lattice (the "atrous" scan, :class:`AtrousScan2x2`), each a quarter of
  the map long; ConvBranch is dw3x3 (bias) -> BN -> GELU -> 1x1; SE is one channel gate
  (LN -> mean over H, W -> C/8 -> GELU -> C -> sigmoid) *shared* by both branches;
* stages 3-4, MobileNetV2 inverted residuals (expand 4, ReLU, SE 0.125, BN, no bias);
* patch merging (2x2 -> LN(4C) -> linear 2C) after stages 1-3, as VMamba V0.

Sizes (``arch_zoo``): T (2, 2, 4, 2) x 48, S (2, 2, 4, 2) x 64, B (2, 2, 9, 2) x 96. The
release's ``vssm_efficient_small.yaml`` says EMBED_DIM 96 (a 24.8M model), but its training
log (and the 11.3M of the paper's Table) is the width-64 model, which is what ``small`` is.

Backbone parameters with the classifier norm but without its linear head: T 6,108,660,
B 32,948,136 (measured on the release's modules); the dense backbone swaps that norm for one
LN per output (B: 32,949,480, as the release's ``Backbone_EfficientVSSM``).

Key layout: the release's, except that named modules replace Sequential indices:
``patch_embed.{proj,norm}`` (release ``patch_embed.{0,2}``) and, in the inverted-residual
stages, ``layers.i.blocks.j`` / ``layers.i.downsample`` (release ``layers.i.{j+1}`` /
``layers.i.{depth+2}``, around two Permutes). :meth:`EfficientVMamba.convert_pretrained`
maps the release's checkpoints (``state_dict`` with ``module.module.`` prefixes; the legacy
VMamba names ``patch_embed.proj``, ``ln_1``, ``self_attention``, ``norm``, ``head``; the
detection backbone's ``outnorm<i>``).
"""
import re

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from ..layers import LayerNorm, run_blocks, stage_drop_path_rates
from ..ops import SCAN_ROUTES, ScanRoute, backend_names, register_scan_route
from .base import DenseBackbone, check_common_args, positive_ints
from .registry import register_backbone
from .vmamba import SS2D, PatchMerging, VSSLayout

__all__ = ['EfficientVMamba', 'AtrousScan2x2', 'EfficientSS2D']


# ---------------------------------------------------------------------------------------
# The atrous (2x2-phase) scan route
# ---------------------------------------------------------------------------------------
@register_scan_route('atrous2x2')
class AtrousScan2x2(ScanRoute):
    """EfficientVMamba's ES2D: the four phases of the 2x2 lattice, no reversed routes.

    Sequence 0: (even row, even col), row-major; 1: (odd row, even col), column-major;
    2: (even row, odd col), row-major; 3: (odd row, odd col), column-major (the release's
    ``EfficientScan``). Every position is visited by exactly one sequence, so the merge
    is a permutation back. H and W must be even: :class:`EfficientSS2D` zero-pads odd maps
    (as the release does) and crops after the merge.
    """
    num_routes = 4
    step = 2

    def positions(self, H, W):
        if H % 2 or W % 2:
            raise ValueError(f"scan route 'atrous2x2' needs an even map, got {H}x{W} "
                             f'(EfficientSS2D pads odd maps)')
        idx = torch.arange(H * W).view(H, W)
        return torch.stack([idx[0::2, 0::2].flatten(), idx[1::2, 0::2].t().flatten(),
                            idx[0::2, 1::2].flatten(), idx[1::2, 1::2].t().flatten()])


class EfficientSS2D(SS2D):
    """VMamba's SS2D (V0 settings) on a route that needs a map divisible by ``route.step``.

    Odd maps are zero-padded at the bottom / right *after* the depthwise conv and cropped
    after the merge, as the release's ``EfficientScan`` / ``EfficientMerge``: the padded
    tokens have x = 0, hence B = C = 0 and dt = softplus(bias), so they still decay the
    state of the sequences they sit in. Matching that keeps the release's outputs.
    """

    def __init__(self, dim, scan_route='atrous2x2', **kwargs):
        super().__init__(dim, scan_route=scan_route, **kwargs)

    def ssm(self, x):
        step = getattr(self.route, 'step', 1)
        H, W = x.shape[-2:]
        ph, pw = -H % step, -W % step
        if not (ph or pw):
            return super().ssm(x)
        return super().ssm(F.pad(x, (0, pw, 0, ph)))[:, :H, :W]


# ---------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------
class ChannelGate(nn.Module):
    """The release's ``BiAttn`` (channel part only), NHWC: x * sigmoid(MLP(mean_HW(LN(x))))."""

    def __init__(self, dim, ratio=0.125):
        super().__init__()
        self.norm = LayerNorm(dim)
        self.global_reduce = nn.Linear(dim, int(dim * ratio))
        self.act = nn.GELU()
        self.channel_select = nn.Linear(int(dim * ratio), dim)

    def forward(self, x):
        g = self.norm(x).mean((1, 2), keepdim=True)
        return x * torch.sigmoid(self.channel_select(self.act(self.global_reduce(g))))


class EVSSBlock(nn.Module):
    """x + drop_path(SE(ES2D(LN(x))) + SE(ConvBranch(LN(x)))), one SE for both, NHWC."""

    def __init__(self, dim, drop_path=0., se_ratio=0.125, **ssm_args):
        super().__init__()
        self.norm = LayerNorm(dim)
        self.op = EfficientSS2D(dim, **ssm_args)
        # Sequential indices 0, 1, 3 are the release's key names
        self.conv_branch = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.BatchNorm2d(dim), nn.GELU(),
            nn.Conv2d(dim, dim, 1))
        self.se = ChannelGate(dim, se_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        y = self.norm(x)
        conv = self.conv_branch(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.drop_path(self.se(self.op(y)) + self.se(conv))


class SqueezeExcite(nn.Module):
    """x * sigmoid(1x1(ReLU(1x1(avgpool(x))))), NCHW (the release's MobileNet SE)."""

    def __init__(self, chs, rd_chs):
        super().__init__()
        self.conv_reduce = nn.Conv2d(chs, rd_chs, 1)
        self.act = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(rd_chs, chs, 1)

    def forward(self, x):
        s = self.conv_expand(self.act(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


def _conv_bn(in_chs, out_chs, k=1, groups=1, act=True):
    layers = [nn.Conv2d(in_chs, out_chs, k, padding=k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_chs)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block with SE (the release's ``InvertedResidual(C, C, expand_ratio=4,
    se_ratio=0.125)``): pw-BN-ReLU, dw3x3-BN-ReLU, SE, pw-BN, residual. NCHW."""

    def __init__(self, dim, drop_path=0., expand_ratio=4, se_ratio=0.125):
        super().__init__()
        mid = int(dim * expand_ratio)
        self.conv_pw = _conv_bn(dim, mid)
        self.conv_dw = _conv_bn(mid, mid, 3, groups=mid)
        self.se = SqueezeExcite(mid, max(1, int(mid * se_ratio)))
        self.conv_pw2 = _conv_bn(mid, dim, act=False)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        return x + self.drop_path(self.conv_pw2(self.se(self.conv_dw(self.conv_pw(x)))))


class PatchEmbed(nn.Module):
    """4x4/s4 conv + LN. Like the release's conv, the last H % 4 rows and W % 4 columns
    are dropped, so the output is floor(H/4) x floor(W/4). NCHW in, NHWC out."""

    def __init__(self, in_chs, dim, patch_size=4):
        super().__init__()
        self.proj = nn.Conv2d(in_chs, dim, patch_size, stride=patch_size)
        self.norm = LayerNorm(dim)

    def forward(self, x):
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class Stage(nn.Module):
    """Blocks, then the downsampling to the next stage's width. NHWC in and out;
    ``channels_first`` blocks (the inverted residuals) run on an NCHW view."""

    def __init__(self, blocks, downsample=None, channels_first=False):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.channels_first = channels_first

    def forward_blocks(self, x, with_cp=False):
        if not self.channels_first:
            return run_blocks(self.blocks, x, with_cp)
        return run_blocks(self.blocks, x.permute(0, 3, 1, 2), with_cp).permute(0, 2, 3, 1)


# ---------------------------------------------------------------------------------------
# The backbone
# ---------------------------------------------------------------------------------------
@register_backbone
class EfficientVMamba(VSSLayout, DenseBackbone):
    """EfficientVMamba backbone returning NCHW features at strides 4/8/16/32.

    Args:
        arch (str | dict): 'tiny', 'small', 'base', or a dict with ``depths`` and
            ``embed_dim`` (or ``dims``), optionally any key of :attr:`default_settings`.
        in_channels (int): input image channels.
        out_indices (Sequence[int]): stages whose outputs are returned.
        drop_path_rate (float): stochastic depth of the last block, rising linearly from 0
            over all blocks (EVSS and inverted residual alike, as the release).
        frozen_stages (int): freeze the stem and stages ``< frozen_stages`` (each stage
            with the downsampling that follows it; BatchNorm in eval mode); -1: none.
        norm_eval (bool): keep every BatchNorm in eval mode while training.
        with_cp (bool | Sequence[bool]): activation checkpointing per block, for all
            stages or per stage; outputs and gradients are unchanged.
        scan_backend (str): selective-scan backend ('auto' | 'torch' | 'mamba_ssm' |
            'triton', see :mod:`backbones.ops.selective_scan`).
        scan_route (str): route of the EVSS scans; 'atrous2x2' is the release's (another
            route, e.g. 'cross2d', is an ablation and has no pretrained weights).
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``
            loads an official classification checkpoint strictly.
    """

    #: Block settings of the release (its VSSBlock / InvertedResidual as built by
    #: EfficientVSSM; the yamls' D_STATE / DT_RANK are swallowed, so the defaults apply).
    default_settings = dict(evss_stages=2, d_state=16, ssm_ratio=2.0, dt_rank='auto',
                            se_ratio=0.125, expand_ratio=4)
    arch_dict_help = 'a dict with depths and embed_dim / dims'
    arch_zoo = {
        'tiny': dict(depths=(2, 2, 4, 2), embed_dim=48),
        'small': dict(depths=(2, 2, 4, 2), embed_dim=64),  # the training log's, not the yaml's 96
        'base': dict(depths=(2, 2, 9, 2), embed_dim=96),
    }

    def __init__(self, arch='base', in_channels=3, out_indices=(0, 1, 2, 3),
                 drop_path_rate=0.2, frozen_stages=-1, norm_eval=False, with_cp=False,
                 scan_backend='auto', scan_route='atrous2x2', init_cfg=None):
        cfg = self._parse_arch(arch)
        depths, dims = cfg.pop('depths'), cfg.pop('dims')
        num_stages = len(depths)
        check_common_args('EfficientVMamba', in_channels, drop_path_rate)
        if scan_backend not in backend_names():
            raise ValueError(f'EfficientVMamba: unknown scan_backend {scan_backend!r}; '
                             f'valid: {backend_names()}')
        if scan_route not in SCAN_ROUTES:
            raise ValueError(f'EfficientVMamba: unknown scan_route {scan_route!r}; valid: '
                             f'{sorted(SCAN_ROUTES)}')
        super().__init__(num_stages, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        self.arch_settings = dict(cfg, depths=depths, dims=dims)
        self.depths, self.dims = depths, dims

        ssm_args = dict(d_state=cfg['d_state'], ssm_ratio=cfg['ssm_ratio'],
                        dt_rank=cfg['dt_rank'], conv_bias=True, gate=True,
                        scan_route=scan_route, scan_backend=scan_backend)
        self.patch_embed = PatchEmbed(in_channels, dims[0])
        dpr = stage_drop_path_rates(drop_path_rate, depths)
        self.layers = nn.ModuleList()
        for i in range(num_stages):
            if i < cfg['evss_stages']:
                blocks = [EVSSBlock(dims[i], r, cfg['se_ratio'], **ssm_args) for r in dpr[i]]
            else:
                blocks = [InvertedResidual(dims[i], r, cfg['expand_ratio'], cfg['se_ratio'])
                          for r in dpr[i]]
            down = PatchMerging(dims[i], dims[i + 1]) if i < num_stages - 1 else None
            self.layers.append(Stage(blocks, down, channels_first=i >= cfg['evss_stages']))
        self._build_out_norms(dims, LayerNorm)

        self.apply(self._init_weights)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        arch = cls.lookup_arch(arch)
        valid = {'depths', 'embed_dim', 'dims', *cls.default_settings}
        unknown = sorted(set(arch) - valid)
        if unknown:
            raise ValueError(f'EfficientVMamba: unknown arch keys {unknown}; valid keys: '
                             f'{sorted(valid)}')
        cfg = dict(cls.default_settings)
        cfg.update((k, v) for k, v in arch.items() if k not in ('embed_dim', 'dims'))
        depths = tuple(cfg.get('depths', ()))
        if 'dims' in arch:
            dims = tuple(arch['dims'])
        elif 'embed_dim' in arch:
            dims = tuple(int(arch['embed_dim']) * 2 ** i for i in range(len(depths)))
        else:
            dims = ()
        if len(dims) != len(depths) or not positive_ints(depths + dims):
            raise ValueError(f'EfficientVMamba: arch needs depths and embed_dim (or dims of '
                             f'the same length) as positive ints, got {arch!r}')
        if not (isinstance(cfg['evss_stages'], int) and 0 <= cfg['evss_stages'] <= len(depths)):
            raise ValueError(f'EfficientVMamba: arch evss_stages must be an int in '
                             f'[0, {len(depths)}], got {cfg["evss_stages"]!r}')
        cfg.update(depths=depths, dims=dims)
        return cfg

    # init (convs and BN keep the PyTorch default), stem and stage_modules: VSSLayout

    @classmethod
    def convert_pretrained(cls, state_dict):
        """Map an official EfficientVMamba checkpoint onto our keys.

        Strips every ``module.`` prefix (the release saves ``module.module.``), drops the
        classifier (``classifier.*``, legacy ``norm.*`` / ``head.*``), renames
        ``patch_embed.{0,2}`` and the legacy ``ln_1`` / ``self_attention`` block names,
        the inverted-residual stages' ``layers.i.<k>`` (block k-1, or the patch merging
        there, recognised by its ``norm`` / ``reduction``) and the detection backbone's
        ``outnorm<i>``. Our layout passes unchanged (converting twice is harmless);
        unknown keys are kept for the strict loader to name.
        """
        out = {}
        for key, value in state_dict.items():
            while key.startswith('module.'):
                key = key[len('module.'):]
            if key.startswith(('classifier.', 'head.', 'norm.')):
                continue
            key = re.sub(r'^patch_embed\.0\.', 'patch_embed.proj.', key)
            key = re.sub(r'^patch_embed\.2\.', 'patch_embed.norm.', key)
            key = re.sub(r'^(layers\.\d+\.blocks\.\d+)\.ln_1\.', r'\1.norm.', key)
            key = re.sub(r'^(layers\.\d+\.blocks\.\d+)\.self_attention\.', r'\1.op.', key)
            m = re.match(r'^layers\.(\d+)\.(\d+)\.(.*)$', key)
            if m:
                stage, k, rest = m[1], int(m[2]), m[3]
                is_merge = rest.startswith(('norm.', 'reduction.'))
                key = (f'layers.{stage}.downsample.{rest}' if is_merge
                       else f'layers.{stage}.blocks.{k - 1}.{rest}')
            key = re.sub(r'^outnorm(\d+)\.', r'out_norms.\1.', key)
            out[key] = value
        return out
