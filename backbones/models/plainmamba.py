"""PlainMamba backbone for dense prediction (mmdet + mmseg).

Paper: `PlainMamba: Improving Non-Hierarchical Mamba in Visual Recognition` (Yang et al.,
BMVC 2024, https://arxiv.org/abs/2403.17695); release github.com/ChenhongyiYang/PlainMamba
(``mmcls/plain_mamba_dev/models/plain_mamba/*.py``, ``.../modules/patch_embed.py``,
``downstream/mmsegmentation/mmseg/models/backbones/plain_mamba_seg.py``), which fixes:

* a plain (non-hierarchical) stride-16 network of constant width C, no CLS token;
* conv stem: conv7x7/s2 (3->64) + BN + ReLU, ``num_convs`` x [conv3x3 + BN + ReLU],
  then an 8x8/s8 projection to C, the stride-2 map zero-padded bottom/right ("corner"
  adaptive padding) so the output is ceil(H/16) x ceil(W/16);
* a learnable position embedding for the 14x14 grid of 224 px, resized bicubically;
* blocks ``x + DropPath(PlainMamba2D(LN(x)))`` without MLP (L1: a dw3x3 + BN + GELU after
  block 0); PlainMamba2D: in_proj C->4C, dw7x7 + SiLU, ONE SSM shared by four zig-zag
  scans (:class:`ZigZagScan`), a learned bias per move direction added to B, the four
  outputs summed, times SiLU(z), out_proj;
* dense outputs (segmentation, ``adapter=None``): four taps at the ends of equal layer
  groups, each with its LayerNorm (eps 1e-6; the last tap's is the classifier's final norm
  ``ln1``), all at stride 16;
* detection (``adapter=dict(...)``): the release's PlainMamba-Adapter, a ViT-Adapter with
  multi-scale deformable attention around the same layer groups
  (:class:`backbones.models.vit_adapter.Adapter`, shared with ``ViTAdapter``), giving
  strides 4/8/16/32 with a BatchNorm each
  (``final_norm=False`` there: no ``ln1``). One type for both tasks, so a row is one
  ``(type, arch)``.

Two release behaviours are reproduced because its weights were trained with them
(``release_order=True``, the default):

* only the input u is put in scan order; dt, B and C reach the kernel in raster order,
  while the direction biases are in scan order (``release_order=False`` routes dt, B and C
  with u, the self-consistent reading);
* ``dt_proj`` is an ``nn.Linear`` with bias and its bias is passed again as the kernel's
  ``delta_bias``, so dt = softplus(W dt + 2 b). Kept in both modes (it is a weight fact).

Backbone parameters (no classifier), checked in tests/test_plainmamba.py: L1 / L2 / L3
7,358,656 / 25,760,832 / 50,507,456 (the release's "7.3 / 25.7 / 50.5"); the dense models
add one LN per extra tap.

Key layout: the release's (``patch_embed.{stem,convs,projection}``, ``pos_embed``,
``layers.i.{norm,mamba,dw}``); the tap norms are ``out_norms.t`` (release: ``norm_layer<i>``
and ``ln1``; the detector's ``ad_norm<t+1>``), the adapter is ``adapter.*`` (release: its
``spm``, ``interactions``, ``level_embed``, ``up`` at the top). :meth:`PlainMamba.
convert_pretrained` maps an mmcls checkpoint (``backbone.`` prefixes, ``head.*``, EMA
``ema_*`` buffers) or a release seg / det backbone onto it.
"""
import math
import re
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from ..layers import LayerNorm, run_blocks
from ..ops import ScanRoute, backend_names, get_scan_route, register_scan_route, selective_scan
from .base import DenseBackbone, check_common_args
from .registry import register_backbone
from .vit_adapter import Adapter

__all__ = ['PlainMamba', 'PlainMamba2D', 'ZigZagScan', 'resize_pos_embed']

#: Move labels of ``direction_Bs`` rows: the move that led into a token (release order).
START, RIGHT, LEFT, UP, DOWN = range(5)


# ---------------------------------------------------------------------------------------
# Zig-zag scan route
# ---------------------------------------------------------------------------------------
@register_scan_route('zigzag4')
class ZigZagScan(ScanRoute):
    """PlainMamba's four continuous scans (no jump between rows / columns):

    0. row snake from (0, 0): right along row 0, down, left along row 1, ...
    1. the exact reverse of 0;
    2. column snake from (0, 0): down column 0, right, up column 1, ...
    3. the exact reverse of 2.
    """
    num_routes = 4

    def positions(self, H, W):
        grid = torch.arange(H * W).view(H, W)
        rows = grid.clone()
        rows[1::2] = rows[1::2].flip(-1)
        cols = grid.t().clone()
        cols[1::2] = cols[1::2].flip(-1)
        rows, cols = rows.flatten(), cols.flatten()
        return torch.stack([rows, rows.flip(0), cols, cols.flip(0)])

    def directions(self, H, W):
        """(K, L) move labels: 0 for the first token, else the step into it
        (1 right, 2 left, 3 up, 4 down), as the release's ``direction_Bs`` index."""
        pos = self.positions(H, W)
        dr = (pos // W).diff(dim=1)
        dc = (pos % W).diff(dim=1)
        moves = torch.where(dc == 1, RIGHT, torch.where(dc == -1, LEFT,
                            torch.where(dr == -1, UP, DOWN)))
        return torch.cat([torch.full_like(pos[:, :1], START), moves], dim=1)

    def index_directions(self, H, W, device='cpu'):
        """:meth:`directions` on ``device``, cached per (H, W, device) like the index."""
        cache = self.__dict__.setdefault('_dir_cache', {})
        key = (int(H), int(W), torch.device(device))
        if key not in cache:
            if len(cache) >= self.index_cache_size:
                cache.pop(next(iter(cache)))
            cache[key] = self.directions(H, W).to(key[2])
        return cache[key]


# ---------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------
class ConvPatchEmbed(nn.Module):
    """conv7x7/s2 + BN + ReLU, ``num_convs`` x (conv3x3 + BN + ReLU), 'corner' pad, conv
    (patch/2)x(patch/2) with that stride. NCHW in, NHWC out (stride ``patch_size``)."""

    def __init__(self, in_chs, dim, num_convs, patch_size=16, stem_chs=64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chs, stem_chs, 7, 2, padding=3, bias=False),
                                  nn.BatchNorm2d(stem_chs), nn.ReLU(inplace=True))
        self.convs = nn.Sequential(*[m for _ in range(num_convs) for m in (
            nn.Conv2d(stem_chs, stem_chs, 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(stem_chs), nn.ReLU(inplace=True))]) if num_convs else None
        self.kernel = patch_size // 2
        self.projection = nn.Conv2d(stem_chs, dim, self.kernel, stride=self.kernel)

    def forward(self, x):
        x = self.stem(x)
        if self.convs is not None:
            x = self.convs(x)
        k = self.kernel  # 'corner' adaptive padding: bottom / right up to a multiple of k
        x = F.pad(x, (0, -x.shape[-1] % k, 0, -x.shape[-2] % k))
        return self.projection(x).permute(0, 2, 3, 1)


def resize_pos_embed(pos_embed, src_shape, dst_shape, mode='bicubic'):
    """(1, Hs*Ws, C) -> (1, Hd*Wd, C), interpolated on the grid (mmcls' rule, no extra
    tokens, align_corners False). Computed in float32 (bicubic has no half kernel on CPU)."""
    if tuple(src_shape) == tuple(dst_shape):
        return pos_embed
    C = pos_embed.shape[-1]
    grid = pos_embed.float().reshape(1, *src_shape, C).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(dst_shape), mode=mode, align_corners=False)
    return grid.flatten(2).transpose(1, 2).to(pos_embed.dtype)


class PlainMamba2D(nn.Module):
    """PlainMamba's token mixer, NHWC in and out. Parameter names and shapes are the
    release's: ``in_proj``, ``conv2d``, ``x_proj`` (no bias), ``dt_proj``, ``A_log``
    (Di, N), ``D`` (Di), ``out_proj``, ``direction_Bs`` (5, N)."""

    def __init__(self, dim, d_state=16, expand=2, dt_rank='auto', conv_size=7, bias=True,
                 conv_bias=True, release_order=True, scan_backend='auto',
                 dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4):
        super().__init__()
        self.route = get_scan_route('zigzag4')
        self.d_state, self.d_inner = d_state, int(expand * dim)
        self.dt_rank = math.ceil(dim / 16) if dt_rank == 'auto' else dt_rank
        self.release_order = release_order
        self.scan_backend = scan_backend
        Di = self.d_inner
        self.in_proj = nn.Linear(dim, 2 * Di, bias=bias)
        self.conv2d = nn.Conv2d(Di, Di, conv_size, padding=conv_size // 2, groups=Di,
                                bias=conv_bias)
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(Di, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, Di, bias=True)
        self.A_log = nn.Parameter(torch.empty(Di, d_state))
        self.D = nn.Parameter(torch.empty(Di))
        self.out_proj = nn.Linear(Di, dim, bias=bias)
        self.direction_Bs = nn.Parameter(torch.empty(self.route.num_routes + 1, d_state))
        self.reset_ssm_parameters(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4):
        """Mamba's init (as the release): dt_proj weight U(+-R^-0.5), softplus(bias)
        log-uniform in [dt_min, dt_max], A = -(1..N), D = 1; direction biases N(0, 0.02)."""
        std = self.dt_rank ** -0.5
        self.dt_proj.weight.uniform_(-std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.dt_proj.bias._no_reinit = True
        self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32))
                         .expand_as(self.A_log))
        self.D.fill_(1.)
        nn.init.trunc_normal_(self.direction_Bs, std=.02)
        for p in (self.A_log, self.D, self.direction_Bs):
            p._no_weight_decay = True

    def ssm(self, x):
        """(B, Di, H, W) -> (B, Di, H*W) float32: four routed scans of one SSM, summed."""
        Bsz, D, H, W = x.shape
        K, R, N, L = self.route.num_routes, self.dt_rank, self.d_state, H * W
        xm = x.flatten(2)                                                    # (B, Di, L)
        dt, Bm, Cm = torch.split(self.x_proj(xm.transpose(1, 2)), [R, N, N], dim=-1)
        dt = self.dt_proj(dt).transpose(1, 2)       # (B, Di, L), includes the bias once
        Bm, Cm = Bm.transpose(1, 2), Cm.transpose(1, 2)                      # (B, N, L)
        xs = self.route.scan(x)                                              # (B, K, Di, L)
        if self.release_order:  # dt / B / C stay in raster order (the release's quirk)
            dts = dt[:, None].expand(Bsz, K, D, L)
            Bs, Cs = Bm[:, None].expand(Bsz, K, N, L), Cm[:, None].expand(Bsz, K, N, L)
        else:
            dts = self.route.scan(dt.view(Bsz, D, H, W))
            Bs = self.route.scan(Bm.view(Bsz, N, H, W))
            Cs = self.route.scan(Cm.view(Bsz, N, H, W))
        dir_b = self.direction_Bs[self.route.index_directions(H, W, x.device)]  # (K, L, N)
        Bs = Bs + dir_b.permute(0, 2, 1).to(Bs.dtype)
        ys = selective_scan(
            xs.reshape(Bsz, K * D, L), dts.reshape(Bsz, K * D, L),
            -torch.exp(self.A_log.float()).repeat(K, 1), Bs, Cs.contiguous(),
            self.D.float().repeat(K), self.dt_proj.bias.float().repeat(K),
            delta_softplus=True, backend=self.scan_backend)                 # fp32
        return self.route.merge(ys.view(Bsz, K, D, L), H, W)

    def forward(self, x):
        B, H, W, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = self.act(self.conv2d(x.permute(0, 3, 1, 2)))
        y = self.ssm(x).transpose(1, 2).view(B, H, W, -1)
        return self.out_proj(y * self.act(z))  # fp32 sum x gate, as the release


class PlainMambaLayer(nn.Module):
    """x + drop_path(PlainMamba2D(LN(x))) [-> dw3x3 + BN + GELU (L1, block 0)], NHWC."""

    def __init__(self, dim, drop_path=0., with_dwconv=False, **mixer_args):
        super().__init__()
        self.norm = LayerNorm(dim)  # nn.LayerNorm default eps 1e-5, as the release
        self.mamba = PlainMamba2D(dim, **mixer_args)
        self.drop_path = DropPath(drop_path)
        self.dw = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False), nn.BatchNorm2d(dim),
            nn.GELU()) if with_dwconv else None

    def forward(self, x):
        x = x + self.drop_path(self.mamba(self.norm(x)))
        if self.dw is not None:
            x = self.dw(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x


# ---------------------------------------------------------------------------------------
# Backbone
# ---------------------------------------------------------------------------------------
@register_backbone
class PlainMamba(DenseBackbone):
    """PlainMamba backbone returning four stride-16 NCHW maps (the release's dense taps).

    Args:
        arch (str | dict): ``'l1'``, ``'l2'``, ``'l3'`` or a dict with the keys of
            :attr:`arch_zoo` entries (``dim``, ``depth``, ``num_convs``, ``dwconv_layers``,
            ``taps``: the layer index ending each of the four "stages").
        in_channels (int): input image channels.
        img_size (int): pretraining resolution; the position embedding is stored for
            ``img_size // 16`` squared and resized bicubically to every input.
        out_indices (Sequence[int]): taps (0..3) to return.
        drop_path_rate (float): stochastic depth of the last layer, linear from 0.
        release_order (bool): feed dt / B / C in raster order as the release does (needed
            for its weights); False routes them with u.
        scan_backend (str): selective-scan backend (``auto``, ``torch``, ``mamba_ssm``,
            ``triton``); an unavailable one falls back to torch.
        adapter (dict, optional): build the detection form: the keyword arguments of
            :class:`backbones.models.vit_adapter.Adapter` (release: ``conv_inplane=64,
            deform_num_heads=6`` (L3: 8), ``n_points=4, cffn_ratio=0.25,
            deform_ratio=1.0``); ``out_indices`` then pick strides 4/8/16/32.
        frozen_stages (int): freeze the stem (and the adapter's spatial prior module), the
            position embedding and the layers (and interaction blocks) of taps
            ``< frozen_stages`` (-1: none).
        norm_eval (bool): keep the BatchNorms (stem, L1's dwconv) in eval mode.
        with_cp (bool | Sequence[bool]): activation checkpointing per layer, for all taps
            or per tap.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)`` loads the
            release's mmcls checkpoint strictly.
    """

    arch_dict_help = 'dict(dim=..., depth=..., num_convs=..., dwconv_layers=..., taps=...)'
    arch_zoo = {  # release arch_zoo L1/L2/L3; taps: its dense out_indices
        'l1': dict(dim=192, depth=24, num_convs=1, dwconv_layers=(0,), taps=(5, 11, 17, 23)),
        'l2': dict(dim=384, depth=24, num_convs=2, dwconv_layers=(), taps=(5, 11, 17, 23)),
        'l3': dict(dim=448, depth=36, num_convs=2, dwconv_layers=(), taps=(8, 17, 26, 35)),
    }

    #: Key prefixes of the dense model only (not in ImageNet checkpoints).
    new_key_prefixes = ('out_norms.', 'adapter.')

    def __init__(self, arch='l1', in_channels=3, img_size=224, out_indices=(0, 1, 2, 3),
                 drop_path_rate=0., release_order=True, scan_backend='auto', d_state=16,
                 adapter=None, frozen_stages=-1, norm_eval=False, with_cp=False,
                 init_cfg=None):
        cfg = self._parse_arch(arch)
        check_common_args('PlainMamba', in_channels, drop_path_rate)
        if scan_backend not in backend_names():
            raise ValueError(f'PlainMamba: unknown scan_backend {scan_backend!r}; valid: '
                             f'{backend_names()}')
        super().__init__(len(cfg['taps']), out_indices=out_indices,
                         frozen_stages=frozen_stages, norm_eval=norm_eval, with_cp=with_cp,
                         init_cfg=init_cfg)
        dim, depth, self.taps = cfg['dim'], cfg['depth'], tuple(cfg['taps'])
        self.dim, self.depth = dim, depth
        self.patch_size = 16
        self.patch_embed = ConvPatchEmbed(in_channels, dim, cfg['num_convs'], self.patch_size)
        self.pos_grid = (img_size // self.patch_size,) * 2
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_grid[0] * self.pos_grid[1], dim))
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # np.linspace
        self.layers = nn.ModuleList([
            PlainMambaLayer(dim, drop_path=dpr[i], with_dwconv=i in cfg['dwconv_layers'],
                            d_state=d_state, release_order=release_order,
                            scan_backend=scan_backend)
            for i in range(depth)])
        self.apply(self._init_weights)
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        if adapter is None:
            self.adapter = None
            self._build_out_norms((dim,) * self.num_stages, lambda c: LayerNorm(c, eps=1e-6))
        else:
            # the release passes its maximum drop_path_rate to every ConvFFN (building it
            # needs mmcv's ops: the adapter imports them then, not at import time)
            self.adapter = Adapter(dim, self.num_stages, drop_path_rate,
                                   in_channels=in_channels, **adapter)
            self._build_out_norms((dim,) * self.num_stages, nn.SyncBatchNorm)
            # no final norm: an ImageNet checkpoint's ln1 is dropped, not loaded into a BN
            self.convert_pretrained = partial(type(self).convert_pretrained, final_norm=False)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        cfg = cls.lookup_arch(arch)
        keys = {'dim', 'depth', 'num_convs', 'dwconv_layers', 'taps'}
        if set(cfg) != keys:
            raise ValueError(f'PlainMamba: arch dict needs exactly the keys {sorted(keys)}, '
                             f'got {sorted(cfg)}')
        taps = tuple(cfg['taps'])
        if not taps or list(taps) != sorted(set(taps)) or taps[0] < 0 \
                or taps[-1] >= cfg['depth']:
            raise ValueError(f'PlainMamba: arch taps must be increasing layer indices below '
                             f'depth={cfg["depth"]}, got {taps}')
        return cfg

    @staticmethod
    def _init_weights(m):
        # mmcv BaseModule default of the release: PyTorch's own init for conv / linear;
        # LayerNorm ones / zeros. The SSM parameters are set by PlainMamba2D itself.
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ---- DenseBackbone hooks --------------------------------------------------------
    @property
    def stem(self):
        return self.patch_embed

    def _tap_layers(self, i):
        start = self.taps[i - 1] + 1 if i else 0
        return range(start, self.taps[i] + 1)

    def stage_modules(self, i):
        extra = [self.adapter.interactions[i]] if self.adapter is not None else []
        return [self.layers[j] for j in self._tap_layers(i)] + [self.out_norms[i]] + extra

    def _frozen_modules(self):
        extra = [self.adapter.spm] if self.adapter is not None and self.frozen_stages >= 0 \
            else []
        return super()._frozen_modules() + extra

    def _freeze_stages(self):
        super()._freeze_stages()
        if self.frozen_stages >= 0:  # the position embeddings belong to the stem
            self.pos_embed.requires_grad = False
            if self.adapter is not None:
                self.adapter.level_embed.requires_grad = False

    @classmethod
    def convert_pretrained(cls, state_dict, taps=4, final_norm=True):
        """Map a release checkpoint onto our keys.

        mmcls ImageClassifier (``backbone.*``, ``head.*``, EMA hook buffers ``ema_*``):
        keeps the backbone; its final norm ``ln1`` becomes the last tap's ``out_norms``
        (dropped with ``final_norm=False``: the detector has none). A release seg backbone's
        ``norm_layer<i>`` become the other taps' norms in order; a release detector's
        ``ad_norm<k>`` become ``out_norms.<k-1>`` and its ``spm``, ``interactions``,
        ``level_embed``, ``up`` go under ``adapter.``. Our own layout passes unchanged.
        Unknown keys are kept for the strict loader to name.
        """
        if any(k.startswith('backbone.') for k in state_dict):
            state_dict = {k[9:]: v for k, v in state_dict.items() if k.startswith('backbone.')}
        extra = sorted({int(k.split('.')[0][10:]) for k in state_dict
                        if re.match(r'norm_layer\d+\.', k)})
        out = {}
        for key, value in state_dict.items():
            head, _, rest = key.partition('.')
            if key.startswith(('ema_', 'head.', 'neck.')) or (head == 'ln1' and not final_norm):
                continue  # EMA copies, classifier, final norm of a model without one
            if head == 'ln1':
                key = f'out_norms.{taps - 1}.{rest}'
            elif re.fullmatch(r'norm_layer\d+', head):
                key = f'out_norms.{extra.index(int(head[10:]))}.{rest}'
            elif re.fullmatch(r'ad_norm\d', head):
                key = f'out_norms.{int(head[7:]) - 1}.{rest}'
            elif head in ('spm', 'interactions', 'level_embed', 'up'):
                key = f'adapter.{key}'
            out[key] = value
        return out

    # ---- forward --------------------------------------------------------------------
    def _embed(self, img):
        """Stem + bicubically resized position embedding: NHWC stride-16 tokens."""
        x = self.patch_embed(img)
        B, H, W, C = x.shape
        return x + resize_pos_embed(self.pos_embed, self.pos_grid, (H, W)).view(1, H, W, C) \
            .to(x.dtype)

    def _run_group(self, i, x):
        return run_blocks([self.layers[j] for j in self._tap_layers(i)], x, self.with_cp[i])

    def _run_stages(self, x):
        x = self._embed(x)
        for i in range(self.out_indices[-1] + 1):  # skip layers after the last tap
            x = self._run_group(i, x)
            if i in self.out_indices:
                yield i, x

    def forward_stages(self, x):
        if self.adapter is None:
            return super().forward_stages(x)
        feats = self.adapter(x, self._embed, self._run_group)
        return tuple(feats[i].contiguous() for i in self.out_indices)

    def forward(self, x):
        if self.adapter is None:
            return super().forward(x)
        return tuple(self.out_norms[i](y) for i, y in zip(self.out_indices,
                                                          self.forward_stages(x)))


