"""VMamba backbones (V0 and V2) for dense prediction (mmdet + mmseg).

Paper: `VMamba: Visual State Space Model` (Liu et al., 2024, https://arxiv.org/abs/2401.10166)
and its public release (github.com/MzeroMiko/VMamba, ``classification/models/vmamba.py``
and ``classification/configs/vssm/*.yaml``), which fixes every size below:

* V0 (``vmambav0_*_224.yaml``, forward type ``v0``): 4x4/s4 patch embedding + LN, blocks
  ``x + drop_path(SS2D(LN(x)))`` without MLP, SS2D with d_state 16, ssm_ratio 2, a SiLU(z)
  gate and a biased depthwise conv, patch merging (2x2 -> LN(4C) -> linear 2C) between
  stages. Depths T (2,2,9,2), S/B (2,2,27,2); widths 96/96/128.
* V2 (``vmambav2_*_224.yaml``: ``vssm1_tiny_0230``, ``vssm1_small_0229``,
  ``vssm1_base_0229``): d_state 1, ssm_ratio 2.0, dt_rank auto (ceil(C/16)), forward type
  ``v05_noz`` (no z gate), conv without bias, an MLP (ratio 4, GELU) after every SS2D,
  stem conv3x3/s2 -> LN -> GELU -> conv3x3/s2 -> LN (``PATCHEMBED: v2``), conv3x3/s2 + LN
  downsampling (``DOWNSAMPLE: v3``), channel-first LayerNorm (``ln2d``; we compute the same
  per-pixel norm channel-last). Depths T (2,2,5,2), S/B (2,2,15,2); widths 96/96/128.
  The release's ``vssm1_tiny_0230s`` / ``*_0229s`` ("s1l8" / "s1l20") checkpoints are
  ssm_ratio 1.0 with depths (2,2,8,2) / (2,2,20,2): build them with a dict arch, e.g.
  ``dict(version='v2', depths=(2, 2, 8, 2), embed_dim=96, ssm_ratio=1.0)``.

Backbone parameters without the classifier (and its norm), checked in tests/test_vmamba.py:
V0 T/S/B 22.1M / 43.6M / 75.2M, V2 T/S/B 29.9M / 49.4M / 87.5M.

Our key layout follows the release (``layers.i.blocks.j.{norm,op,norm2,mlp}``, the
downsampling *after* stage i in ``layers.i.downsample``, SS2D parameter names unchanged),
except that Sequential indices get names: ``patch_embed.{proj,norm}`` (V0) and
``patch_embed.{conv1,norm1,conv2,norm2}`` (V2), ``layers.i.downsample.{conv,norm}`` (V2).
:meth:`VMamba.convert_pretrained` maps both the legacy V0 naming (``ln_1``,
``self_attention``, ``patch_embed.proj``) and the current one (``norm``, ``op``,
``patch_embed.0``).
"""
import math
import re

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

from ..layers import ConvDownsample, ConvStem, LayerNorm, run_blocks, stage_drop_path_rates
from ..ops import (
    SCAN_ROUTES,
    backend_names,
    fuses_routes,
    get_scan_route,
    selective_scan,
    selective_scan_routed,
)
from .base import DenseBackbone, check_common_args, positive_ints
from .registry import register_backbone

__all__ = ['VMamba', 'SS2D']


# ---------------------------------------------------------------------------------------
# Stems and downsampling (NCHW image in, NHWC features out / NHWC in and out)
# ---------------------------------------------------------------------------------------
class PatchEmbed(nn.Module):
    """V0: 4x4/s4 conv + LN; the output is floor(H/4) x floor(W/4).

    As the release (a plain ``Conv2d(k=4, s=4)``): when H or W is not a multiple of 4 the
    last H % 4 rows / W % 4 columns are dropped, not zero-padded. Its checkpoints and its
    ADE20K whole-image numbers were made that way (at 97x131 the stages are 24x32 /
    12x16 / 6x8 / 3x4). LocalVMamba shares this stem.
    """

    def __init__(self, in_chs, dim, patch_size=4):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chs, dim, patch_size, stride=patch_size)
        self.norm = LayerNorm(dim)

    def forward(self, x):
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """V0: concatenate 2x2 neighbours -> LN(4C) -> linear to 2C (bias-free), NHWC.

    The concatenation order (0,0), (1,0), (0,1), (1,1) as (row, col) offsets is the
    release's; it fixes the meaning of the pretrained ``reduction`` weight.
    """

    def __init__(self, dim, out_dim):
        super().__init__()
        self.norm = LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x):
        H, W = x.shape[1:3]
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]],
                      dim=-1)
        return self.reduction(self.norm(x))


STEMS = {'patch': PatchEmbed, 'conv': ConvStem}  # ConvStem, ConvDownsample: backbones.layers
DOWNSAMPLES = {'merge': PatchMerging, 'conv': ConvDownsample}


# ---------------------------------------------------------------------------------------
# SS2D and the VSS block
# ---------------------------------------------------------------------------------------
class SS2D(nn.Module):
    """2-D selective scan: in_proj -> dwconv + SiLU -> K routed selective scans -> merge
    -> LN [-> * SiLU(z)] -> out_proj. NHWC in and out.

    Parameter names and shapes are the release's: ``x_proj_weight`` (K, R + 2N, Di),
    ``dt_projs_weight`` (K, Di, R), ``dt_projs_bias`` (K, Di), ``A_logs`` (K*Di, N),
    ``Ds`` (K*Di), with K routes, Di = ssm_ratio * C inner channels and R = dt_rank.

    ``scan_route`` is a registered route name or a :class:`~backbones.ops.routes.ScanRoute`
    instance (a parametrised route, e.g. LocalVMamba's per-block directions). Variants that
    only change what happens around the scan override :meth:`ssm` and reuse
    :meth:`scan_sequences` (projections + selective scan of already routed sequences).
    """

    def __init__(self, dim, d_state=16, ssm_ratio=2.0, dt_rank='auto', d_conv=3,
                 conv_bias=True, gate=True, scan_route='cross2d', scan_backend='auto',
                 dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4):
        super().__init__()
        self.route = get_scan_route(scan_route) if isinstance(scan_route, str) else scan_route
        self.scan_backend = scan_backend
        K = self.route.num_routes
        d_inner = int(ssm_ratio * dim)
        self.d_state, self.d_inner = d_state, d_inner
        self.dt_rank = math.ceil(dim / 16) if dt_rank == 'auto' else dt_rank
        self.gate = gate

        self.in_proj = nn.Linear(dim, d_inner * (2 if gate else 1), bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2,
                                groups=d_inner, bias=conv_bias)
        self.act = nn.SiLU()
        self.x_proj_weight = nn.Parameter(torch.empty(K, self.dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, d_inner, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, d_inner))
        self.A_logs = nn.Parameter(torch.empty(K * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(K * d_inner))
        self.out_norm = LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)
        self.reset_ssm_parameters(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4):
        """Mamba's init: S4D-real A = -(1..N), D = 1, dt = softplus(bias) log-uniform in
        [dt_min, dt_max]; projections as nn.Linear's default / the release."""
        bound = self.d_inner ** -0.5
        self.x_proj_weight.uniform_(-bound, bound)
        std = self.dt_rank ** -0.5
        self.dt_projs_weight.uniform_(-std, std)
        dt = torch.exp(torch.rand_like(self.dt_projs_bias) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_logs.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32))
                          .expand_as(self.A_logs))
        self.Ds.fill_(1.)
        self.A_logs._no_weight_decay = True
        self.Ds._no_weight_decay = True

    def ssm(self, x):
        """(B, Di, H, W) -> (B, H, W, Di) float32: route, selective scan, merge back."""
        if fuses_routes(self.scan_backend, self.route, x.device):
            return self._ssm_fused(x)
        B, D, H, W = x.shape
        ys = self.scan_sequences(self.route.scan(x))                        # (B, K, D, L)
        y = self.route.merge(ys, H, W)
        return y.view(B, D, H, W).permute(0, 2, 3, 1)

    def scan_sequences(self, xs):
        """(B, K, Di, L) routed sequences -> (B, K, Di, L) float32 scan outputs: per-route
        projections to dt, B, C, then one batched selective scan (route k owns channels
        k*Di .. k*Di+Di-1 of A, D and the dt bias)."""
        B, K, D, L = xs.shape
        R, N = self.dt_rank, self.d_state
        x_dbl = torch.einsum('bkdl,kcd->bkcl', xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
        dts = torch.einsum('bkrl,kdr->bkdl', dts, self.dt_projs_weight)
        ys = selective_scan(
            xs.reshape(B, K * D, L), dts.reshape(B, K * D, L), -torch.exp(self.A_logs.float()),
            Bs, Cs, self.Ds, self.dt_projs_bias.reshape(-1), delta_softplus=True,
            backend=self.scan_backend)                                      # fp32
        return ys.view(B, K, D, L)

    def _ssm_fused(self, x):
        """:meth:`ssm` with the routes inside the Triton kernels (no K copies of x or y).

        The projections act on the (B, Di, H*W) map itself: projecting a token does not
        depend on where a route puts it, so projecting the map and reading it through the
        route's index map equals projecting the routed copies. The kernels then read x,
        dt, B and C through the index map and sum the K outputs back into the map.
        """
        B, D, H, W = x.shape
        R, N = self.dt_rank, self.d_state
        xm = x.flatten(2)                                                    # (B, D, HW)
        x_dbl = torch.einsum('bdp,kcd->bkcp', xm, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
        dts = torch.einsum('bkrp,kdr->bkdp', dts, self.dt_projs_weight)     # (B, K, D, HW)
        y = selective_scan_routed(
            xm, dts, -torch.exp(self.A_logs.float()), Bs, Cs, self.Ds,
            self.dt_projs_bias.reshape(-1), delta_softplus=True,
            index=self.route.index(H, W, x.device))                         # fp32
        return y.view(B, D, H, W).permute(0, 2, 3, 1)

    def forward(self, x):
        x = self.in_proj(x)
        if self.gate:
            x, z = x.chunk(2, dim=-1)
        x = self.act(self.conv2d(x.permute(0, 3, 1, 2)))
        y = self.out_norm(self.ssm(x)).to(x.dtype)  # norm in fp32, as the release
        if self.gate:
            y = y * self.act(z)
        return self.out_proj(y)


class VSSBlock(nn.Module):
    """x + drop_path(SS2D(LN(x))) [+ drop_path(MLP(LN(x)))], NHWC. ``op_layer``: the SS2D
    class (a subclass for variants such as LocalVMamba's)."""

    def __init__(self, dim, drop_path=0., mlp_ratio=0., op_layer=None, **ssm_args):
        super().__init__()
        self.norm = LayerNorm(dim)
        self.op = (op_layer or SS2D)(dim, **ssm_args)
        self.drop_path = DropPath(drop_path)
        if mlp_ratio > 0:
            self.norm2 = LayerNorm(dim)
            self.mlp = Mlp(dim, int(dim * mlp_ratio))  # timm's: fc1, GELU, fc2
        else:
            self.mlp = None

    def forward(self, x):
        x = x + self.drop_path(self.op(self.norm(x)))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class VSSStage(nn.Module):
    """Blocks, then the downsampling to the next stage's width (the release's layout).
    ``per_block``: optional list of ``depth`` dicts of block arguments that differ per block."""

    def __init__(self, dim, depth, drop_path_rates, downsample=None, per_block=None,
                 **block_args):
        super().__init__()
        per_block = per_block or [{}] * depth
        self.blocks = nn.Sequential(*[
            VSSBlock(dim, drop_path=drop_path_rates[j], **block_args, **per_block[j])
            for j in range(depth)])
        self.downsample = downsample if downsample is not None else nn.Identity()

    def forward_blocks(self, x, with_cp=False):
        return run_blocks(self.blocks, x, with_cp)


# ---------------------------------------------------------------------------------------
# The backbone
# ---------------------------------------------------------------------------------------
class VSSLayout:
    """What VMamba-style backbones share: the release's init and layout (``patch_embed``,
    ``layers.i`` each with its blocks and the downsampling after it, ``out_norms.i``)."""

    @staticmethod
    def _init_weights(m):
        # as the release: truncated normal for linear layers, zero bias (convs keep the
        # PyTorch default); the SSM parameters are initialised by SS2D itself
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ---- DenseBackbone hooks --------------------------------------------------------
    @property
    def stem(self):
        return self.patch_embed

    def stage_modules(self, i):
        return [self.layers[i], self.out_norms[i]]

    # ---- forward --------------------------------------------------------------------
    def _run_stages(self, x):
        x = self.patch_embed(x)
        for i, stage in enumerate(self.layers[:self.out_indices[-1] + 1]):  # skip unused
            x = stage.forward_blocks(x, with_cp=self.with_cp[i])
            if i in self.out_indices:
                yield i, x
            if i < self.out_indices[-1]:
                x = stage.downsample(x)


@register_backbone
class VMamba(VSSLayout, DenseBackbone):
    """VMamba (V0 / V2) backbone returning NCHW features at strides 4/8/16/32.

    Args:
        arch (str | dict): a name from :attr:`arch_zoo` (v0-tiny, v0-small, v0-base,
            v2-tiny, v2-small, v2-base), or a dict with ``depths`` and ``embed_dim``
            (or ``dims``), optionally ``version`` ('v0' | 'v2', default 'v2': its
            settings are the defaults) and any key of :attr:`version_settings`.
        in_channels (int): input image channels.
        out_indices (Sequence[int]): stages whose outputs are returned.
        drop_path_rate (float): stochastic depth of the last block, rising linearly from 0.
        frozen_stages (int): freeze the stem and stages ``< frozen_stages`` (each stage
            with the downsampling that follows it); -1 freezes nothing.
        norm_eval (bool): accepted for config compatibility (VMamba has no BatchNorm).
        with_cp (bool | Sequence[bool]): activation checkpointing per block, for all
            stages or per stage; outputs and gradients are unchanged.
        scan_backend (str): selective-scan backend, 'auto' | 'torch' | 'mamba_ssm' |
            'triton' (see :mod:`backbones.ops.selective_scan`); an unavailable one falls back
            to torch, and the log says so once.
        scan_route (str): how the 2-D map is scanned (:mod:`backbones.ops.routes`).
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``
            loads an official classification checkpoint (V0 or V2 naming) strictly.
    """

    #: Block / stem settings per version (the release's configs, see the module docstring).
    version_settings = {
        'v0': dict(d_state=16, ssm_ratio=2.0, dt_rank='auto', conv_bias=True, gate=True,
                   mlp_ratio=0.0, stem='patch', downsample='merge'),
        'v2': dict(d_state=1, ssm_ratio=2.0, dt_rank='auto', conv_bias=False, gate=False,
                   mlp_ratio=4.0, stem='conv', downsample='conv'),
    }
    arch_dict_help = 'a dict with depths and embed_dim / dims'
    #: Sizes by name.
    arch_zoo = {
        'v0-tiny': dict(version='v0', depths=(2, 2, 9, 2), embed_dim=96),
        'v0-small': dict(version='v0', depths=(2, 2, 27, 2), embed_dim=96),
        'v0-base': dict(version='v0', depths=(2, 2, 27, 2), embed_dim=128),
        'v2-tiny': dict(version='v2', depths=(2, 2, 5, 2), embed_dim=96),
        'v2-small': dict(version='v2', depths=(2, 2, 15, 2), embed_dim=96),
        'v2-base': dict(version='v2', depths=(2, 2, 15, 2), embed_dim=128),
    }

    def __init__(self, arch='v2-tiny', in_channels=3, out_indices=(0, 1, 2, 3),
                 drop_path_rate=0.1, frozen_stages=-1, norm_eval=False, with_cp=False,
                 scan_backend='auto', scan_route='cross2d', init_cfg=None):
        cfg = self._parse_arch(arch)
        depths, dims = cfg.pop('depths'), cfg.pop('dims')
        num_stages = len(depths)
        _check_args(in_channels, drop_path_rate, scan_backend, scan_route)
        super().__init__(num_stages, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        self.arch_settings = dict(cfg, depths=depths, dims=dims)
        self.depths, self.dims = depths, dims

        stem, downsample = STEMS[cfg.pop('stem')], DOWNSAMPLES[cfg.pop('downsample')]
        cfg.pop('version')
        self.patch_embed = stem(in_channels, dims[0])
        dpr = stage_drop_path_rates(drop_path_rate, depths)
        self.layers = nn.ModuleList()
        for i in range(num_stages):
            self.layers.append(VSSStage(
                dims[i], depths[i], dpr[i],
                downsample=downsample(dims[i], dims[i + 1]) if i < num_stages - 1 else None,
                scan_route=scan_route, scan_backend=scan_backend, **cfg))
        self._build_out_norms(dims, LayerNorm)

        self.apply(self._init_weights)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        arch = cls.lookup_arch(arch)
        version = arch.get('version', 'v2')
        if version not in cls.version_settings:
            raise ValueError(f'VMamba: arch version must be one of '
                             f'{sorted(cls.version_settings)}, got {version!r}')
        valid = {'version', 'depths', 'embed_dim', 'dims', *cls.version_settings[version]}
        unknown = sorted(set(arch) - valid)
        if unknown:
            raise ValueError(f'VMamba: unknown arch keys {unknown}; valid keys: {sorted(valid)}')
        cfg = dict(cls.version_settings[version], version=version)
        cfg.update((k, v) for k, v in arch.items() if k not in ('embed_dim', 'dims'))
        depths = tuple(cfg['depths']) if 'depths' in cfg else ()
        if 'dims' in arch:
            dims = tuple(arch['dims'])
        elif 'embed_dim' in arch:
            dims = tuple(int(arch['embed_dim']) * 2 ** i for i in range(len(depths)))
        else:
            dims = ()
        if len(dims) != len(depths) or not positive_ints(depths + dims):
            raise ValueError(f'VMamba: arch needs depths and embed_dim (or dims of the same '
                             f'length) as positive ints, got {arch!r}')
        cfg.update(depths=depths, dims=dims)
        _check_block_settings(cfg)
        return cfg

    @classmethod
    def convert_pretrained(cls, state_dict):
        """Map an official VMamba classification checkpoint onto our keys.

        Handles the legacy V0 naming (``patch_embed.proj/norm``, ``blocks.j.ln_1``,
        ``blocks.j.self_attention``, final ``norm`` + ``head``), the current release
        (``patch_embed.<index>``, ``blocks.j.norm/op``, V2 ``downsample.1/3``,
        ``classifier.{norm,head}``) and the release's detection backbone
        (``outnorm<i>``). Classifier keys are dropped; 1x1-conv-shaped Linear2d weights
        are flattened. Our own layout passes unchanged, so converting twice is harmless.
        Unknown keys are kept for the strict loader to name.
        """
        v2_stem = 'patch_embed.5.weight' in state_dict
        stem_names = ({'0': 'conv1', '2': 'norm1', '5': 'conv2', '7': 'norm2'} if v2_stem
                      else {'0': 'proj', '2': 'norm'})
        out = {}
        for key, value in state_dict.items():
            if key.startswith(('classifier.', 'head.', 'norm.')):
                continue
            key = re.sub(r'^patch_embed\.(\d+)\.',
                         lambda m: f'patch_embed.{stem_names.get(m[1], m[1])}.', key)
            key = re.sub(r'^(layers\.\d+\.blocks\.\d+)\.ln_1\.', r'\1.norm.', key)
            key = re.sub(r'^(layers\.\d+\.blocks\.\d+)\.self_attention\.', r'\1.op.', key)
            key = re.sub(r'^(layers\.\d+\.downsample)\.1\.', r'\1.conv.', key)
            key = re.sub(r'^(layers\.\d+\.downsample)\.3\.', r'\1.norm.', key)
            key = re.sub(r'^outnorm(\d+)\.', r'out_norms.\1.', key)
            if value.dim() == 4 and value.shape[2:] == (1, 1) and key.endswith(
                    ('in_proj.weight', 'out_proj.weight', 'fc1.weight', 'fc2.weight')):
                value = value.flatten(1)
            out[key] = value
        return out


# ---- helpers ---------------------------------------------------------------------------
def _check_args(in_channels, drop_path_rate, scan_backend, scan_route):
    check_common_args('VMamba', in_channels, drop_path_rate)
    if scan_backend not in backend_names():
        raise ValueError(f'VMamba: unknown scan_backend {scan_backend!r}; valid: '
                         f'{backend_names()}')
    if scan_route not in SCAN_ROUTES:
        raise ValueError(f'VMamba: unknown scan_route {scan_route!r}; valid: '
                         f'{sorted(SCAN_ROUTES)}')


def _check_block_settings(cfg):
    def bad(key, what):
        raise ValueError(f'VMamba: arch {key} must be {what}, got {cfg[key]!r}')

    if cfg['stem'] not in STEMS:
        bad('stem', f'one of {sorted(STEMS)}')
    if cfg['downsample'] not in DOWNSAMPLES:
        bad('downsample', f'one of {sorted(DOWNSAMPLES)}')
    if not (isinstance(cfg['d_state'], int) and cfg['d_state'] > 0):
        bad('d_state', 'a positive int')
    if not (isinstance(cfg['dt_rank'], int) and cfg['dt_rank'] > 0) and cfg['dt_rank'] != 'auto':
        bad('dt_rank', "'auto' or a positive int")
    if not (isinstance(cfg['ssm_ratio'], (int, float)) and cfg['ssm_ratio'] > 0):
        bad('ssm_ratio', 'a positive number')
    if not (isinstance(cfg['mlp_ratio'], (int, float)) and cfg['mlp_ratio'] >= 0):
        bad('mlp_ratio', 'a number >= 0 (0: no MLP)')
    for key in ('conv_bias', 'gate'):
        if not isinstance(cfg[key], bool):
            bad(key, 'a bool')
