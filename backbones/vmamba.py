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
import torch.utils.checkpoint as cp
from torch import nn

from .base import DenseBackbone
from .layers import LayerNorm, stage_drop_path_rates
from .registry import register_backbone
from .scan_routes import SCAN_ROUTES, get_scan_route
from .selective_scan import BACKENDS, selective_scan

__all__ = ['VMamba', 'SS2D']


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability p."""

    def __init__(self, drop_prob=0.):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1. - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self):
        return f'drop_prob={self.drop_prob:.3f}'


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _pad_to_multiple(x, m):
    """Pad an NCHW map at the bottom / right so H and W divide by ``m`` (ceil output sizes)."""
    ph, pw = -x.shape[-2] % m, -x.shape[-1] % m
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


# ---------------------------------------------------------------------------------------
# Stems and downsampling (NCHW image in, NHWC features out / NHWC in and out)
# ---------------------------------------------------------------------------------------
class PatchEmbed(nn.Module):
    """V0: 4x4/s4 conv + LN. Odd sizes are padded, so the output is ceil(H/4) x ceil(W/4)."""

    def __init__(self, in_chs, dim, patch_size=4):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chs, dim, patch_size, stride=patch_size)
        self.norm = LayerNorm(dim)

    def forward(self, x):
        x = self.proj(_pad_to_multiple(x, self.patch_size))
        return self.norm(x.permute(0, 2, 3, 1))


class ConvStem(nn.Module):
    """V2: conv3x3/s2 -> LN -> GELU -> conv3x3/s2 -> LN, half the width in between."""

    def __init__(self, in_chs, dim):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, dim // 2, 3, stride=2, padding=1)
        self.norm1 = LayerNorm(dim // 2)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1)
        self.norm2 = LayerNorm(dim)

    def forward(self, x):
        x = self.norm1(self.conv1(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.conv2(self.act(x))
        return self.norm2(x.permute(0, 2, 3, 1))


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


class ConvDownsample(nn.Module):
    """V2: conv3x3/s2 + LN, NHWC."""

    def __init__(self, dim, out_dim):
        super().__init__()
        self.conv = nn.Conv2d(dim, out_dim, 3, stride=2, padding=1)
        self.norm = LayerNorm(out_dim)

    def forward(self, x):
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


STEMS = {'patch': PatchEmbed, 'conv': ConvStem}
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
    """

    def __init__(self, dim, d_state=16, ssm_ratio=2.0, dt_rank='auto', d_conv=3,
                 conv_bias=True, gate=True, scan_route='cross2d', scan_backend='auto',
                 dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4):
        super().__init__()
        self.route = get_scan_route(scan_route)
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
        B, D, H, W = x.shape
        K, R, N = self.route.num_routes, self.dt_rank, self.d_state
        xs = self.route.scan(x)                                              # (B, K, D, L)
        x_dbl = torch.einsum('bkdl,kcd->bkcl', xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
        dts = torch.einsum('bkrl,kdr->bkdl', dts, self.dt_projs_weight)
        ys = selective_scan(
            xs.reshape(B, K * D, -1), dts.reshape(B, K * D, -1), -torch.exp(self.A_logs.float()),
            Bs, Cs, self.Ds, self.dt_projs_bias.reshape(-1), delta_softplus=True,
            backend=self.scan_backend)                                      # fp32
        y = self.route.merge(ys.view(B, K, D, -1), H, W)
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
    """x + drop_path(SS2D(LN(x))) [+ drop_path(MLP(LN(x)))], NHWC."""

    def __init__(self, dim, drop_path=0., mlp_ratio=0., **ssm_args):
        super().__init__()
        self.norm = LayerNorm(dim)
        self.op = SS2D(dim, **ssm_args)
        self.drop_path = DropPath(drop_path)
        if mlp_ratio > 0:
            self.norm2 = LayerNorm(dim)
            self.mlp = Mlp(dim, int(dim * mlp_ratio))
        else:
            self.mlp = None

    def forward(self, x):
        x = x + self.drop_path(self.op(self.norm(x)))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class VSSStage(nn.Module):
    """Blocks, then the downsampling to the next stage's width (the release's layout)."""

    def __init__(self, dim, depth, drop_path_rates, downsample=None, **block_args):
        super().__init__()
        self.blocks = nn.Sequential(*[
            VSSBlock(dim, drop_path=drop_path_rates[j], **block_args) for j in range(depth)])
        self.downsample = downsample if downsample is not None else nn.Identity()

    def forward_blocks(self, x, with_cp=False):
        for block in self.blocks:
            if with_cp and torch.is_grad_enabled():
                x = cp.checkpoint(block, x, use_reentrant=False)  # one block at a time
            else:
                x = block(x)
        return x


# ---------------------------------------------------------------------------------------
# The backbone
# ---------------------------------------------------------------------------------------
@register_backbone
class VMamba(DenseBackbone):
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
        scan_backend (str): selective-scan backend, 'auto' | 'torch' | 'mamba_ssm'
            (see :mod:`backbones.selective_scan`); an unavailable one falls back to torch.
        scan_route (str): how the 2-D map is scanned (:mod:`backbones.scan_routes`).
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
        names = ', '.join(cls.arch_zoo)
        if isinstance(arch, str):
            if arch not in cls.arch_zoo:
                raise ValueError(f'VMamba: unknown arch {arch!r}; valid names: {names} (or a '
                                 f'dict with depths and embed_dim / dims)')
            arch = cls.arch_zoo[arch]
        if not isinstance(arch, dict):
            raise ValueError(f'VMamba: arch must be one of {names} or a dict, got {arch!r}')
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
        if not depths or len(dims) != len(depths) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in depths + dims):
            raise ValueError(f'VMamba: arch needs depths and embed_dim (or dims of the same '
                             f'length) as positive ints, got {arch!r}')
        cfg.update(depths=depths, dims=dims)
        _check_block_settings(cfg)
        return cfg

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

    # ---- forward --------------------------------------------------------------------
    def _run_stages(self, x):
        """Yield ``(stage index, NHWC output)`` for every index in ``out_indices``."""
        x = self.patch_embed(x)
        for i, stage in enumerate(self.layers[:self.out_indices[-1] + 1]):  # skip unused
            x = stage.forward_blocks(x, with_cp=self.with_cp[i])
            if i in self.out_indices:
                yield i, x
            if i < self.out_indices[-1]:
                x = stage.downsample(x)

    def forward_stages(self, x):
        """Stage outputs before the output norms (NCHW)."""
        return tuple(y.permute(0, 3, 1, 2).contiguous() for _, y in self._run_stages(x))

    def forward(self, x):
        return tuple(self.out_norms[i](y).permute(0, 3, 1, 2).contiguous()
                     for i, y in self._run_stages(x))


# ---- helpers ---------------------------------------------------------------------------
def _check_args(in_channels, drop_path_rate, scan_backend, scan_route):
    if not (isinstance(in_channels, int) and in_channels > 0):
        raise ValueError(f'VMamba: in_channels must be a positive int, got {in_channels!r}')
    if not 0. <= drop_path_rate < 1.:
        raise ValueError(f'VMamba: drop_path_rate must be in [0, 1), got {drop_path_rate}')
    if scan_backend not in BACKENDS:
        raise ValueError(f'VMamba: unknown scan_backend {scan_backend!r}; valid: {BACKENDS}')
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
