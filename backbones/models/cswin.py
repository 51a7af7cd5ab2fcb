"""CSWin Transformer backbones (tiny / small / base) for dense prediction (mmdet + mmseg).

Paper: `CSWin Transformer: A General Vision Transformer Backbone with Cross-Shaped Windows`
(Dong et al., CVPR 2022, https://arxiv.org/abs/2107.00652) and its public release
(github.com/microsoft/CSWin-Transformer @ f111ae2): the ImageNet model ``models/cswin.py`` and
the dense backbone ``segmentation/backbone/cswin_transformer.py`` (class ``CSWin``), which
fixes everything below. Neither timm nor mmpretrain ships CSWin.

* Stem: conv 7x7/s4 (padding 2) + LN. Between stages: conv 3x3/s2 + LN (the release's
  ``Merge_Block``: :class:`backbones.layers.ConvDownsample`). Widths C, 2C, 4C, 8C.
* Block: ``x + DP(proj(attn(LN(x))))``, ``x + DP(MLP(LN(x)))``, one ``qkv`` linear (with
  bias) for all branches. Stages 1-3 split the channels in half: branch 0 attends inside
  vertical stripes (full height, ``split_size`` wide), branch 1 inside horizontal ones,
  each with half the heads. The last stage has one branch attending over the whole map
  (the dense file always does so; issue #10: "the last stage always use the global
  self-attention").
* LePE: a depthwise 3x3 conv of V inside each stripe, added to ``attn @ V``.
* Any input size, as the release's dense file: each branch zero-pads its q / k / v maps to a
  multiple of the stripe **symmetrically** (top / left get ``pad // 2``, bottom / right the
  rest), attends with the padded tokens **unmasked** (their q = k = v = 0, so they take
  softmax weight exp(0) and feed the LePE conv), and crops back. This is what the released
  segmentation numbers were made with, so we keep it.
* Outputs: each stage through a LayerNorm (the dense file's ``norm1..norm4``, our
  ``out_norms``), NCHW, strides 4/8/16/32.

Key layout (ours): ``stem.{proj,norm}``, ``stages.i.downsample.{conv,norm}`` (i >= 1),
``stages.i.blocks.j.{norm1,qkv,attns.k.get_v,proj,norm2,mlp.fc1,mlp.fc2}``, ``out_norms.i``.
:meth:`CSWin.convert_pretrained` maps the release's ImageNet checkpoints
(``stage1_conv_embed.{0,2}``, ``stage{1..4}.j``, ``merge{1..3}``, final ``norm`` and
``head``, dropped) and the backbone part of its UperNet checkpoints (the same plus
``norm{1..4}``).

Backbone parameters (with the four output norms), checked in tests/test_cswin.py:
T 21,808,448, S 34,131,200, B 76,614,528, as the release's dense ``CSWin``.
"""
import re

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

from ..engine.checkpoint import load_checkpoint_file
from ..layers import ConvDownsample, LayerNorm, run_blocks, stage_drop_path_rates
from .base import DenseBackbone, check_common_args, positive_ints
from .registry import register_backbone

__all__ = ['CSWin', 'CSWinBlock', 'LePEAttention']


class ConvPatchEmbed(nn.Module):
    """conv 7x7/s4 (padding 2) + LN: NCHW image in, NHWC features out."""

    def __init__(self, in_chs, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chs, dim, 7, stride=4, padding=2)
        self.norm = LayerNorm(dim)

    def forward(self, x):
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


def _to_windows(x, wh, ww):
    """(B, H, W, C) -> (B * windows, wh * ww, C), tokens row-major inside each window."""
    B, H, W, C = x.shape
    x = x.view(B, H // wh, wh, W // ww, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, C)


def _from_windows(x, wh, ww, B, H, W):
    x = x.view(B, H // wh, W // ww, wh, ww, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H, W, -1)


class LePEAttention(nn.Module):
    """Multi-head attention inside stripes of one orientation, plus LePE (NHWC).

    ``axis``: 0 = vertical stripes (full height x ``stripe``), 1 = horizontal stripes
    (``stripe`` x full width), None = the whole map as one window (the last stage).
    """
    #: scaled_dot_product_attention outside tracing; the explicit matmuls while tracing, so
    #: the FLOP counter (which has no handle for SDPA) sees the attention
    fused_attn = True

    def __init__(self, dim, num_heads, stripe=None, axis=None):
        super().__init__()
        self.num_heads = num_heads
        self.stripe, self.axis = stripe, axis
        self.scale = (dim // num_heads) ** -0.5
        self.get_v = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def window_size(self, H, W):
        if self.axis is None:
            return H, W
        return (H, self.stripe) if self.axis == 0 else (self.stripe, W)

    def forward(self, q, k, v):
        B, H, W, C = q.shape
        wh, ww = self.window_size(H, W)
        pad_h, pad_w = -H % wh, -W % ww
        top, left = pad_h // 2, pad_w // 2
        if pad_h or pad_w:  # symmetric zero padding, unmasked (as the release)
            pads = (0, 0, left, pad_w - left, top, pad_h - top)
            q, k, v = (F.pad(t, pads) for t in (q, k, v))
        Hp, Wp = H + pad_h, W + pad_w
        q, k, v = (_to_windows(t, wh, ww) for t in (q, k, v))
        n, N = q.shape[:2]
        lepe = self.get_v(v.reshape(n, wh, ww, C).permute(0, 3, 1, 2))
        lepe = lepe.permute(0, 2, 3, 1).reshape(n, N, C)
        q, k, v = (t.reshape(n, N, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        if self.fused_attn and not torch.jit.is_tracing():
            x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            x = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        x = x.transpose(1, 2).reshape(n, N, C) + lepe
        x = _from_windows(x, wh, ww, B, Hp, Wp)
        return x[:, top:top + H, left:left + W] if pad_h or pad_w else x


class CSWinBlock(nn.Module):
    """Cross-shaped window block (NHWC): two stripe branches on half the channels each, or
    one global branch (``last_stage``)."""

    def __init__(self, dim, num_heads, split_size, mlp_ratio=4., drop_path=0.,
                 last_stage=False):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3)
        if last_stage:
            self.attns = nn.ModuleList([LePEAttention(dim, num_heads)])
        else:
            self.attns = nn.ModuleList([
                LePEAttention(dim // 2, num_heads // 2, split_size, axis) for axis in (0, 1)])
        self.proj = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        B, H, W, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, H, W, 3, C).unbind(3)
        if len(self.attns) == 1:
            y = self.attns[0](q, k, v)
        else:
            h = C // 2
            y = torch.cat([a(q[..., s], k[..., s], v[..., s]) for a, s in zip(
                self.attns, (slice(0, h), slice(h, C)))], dim=-1)
        x = x + self.drop_path(self.proj(y))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CSWinStage(nn.Module):
    """Optional downsampling (conv 3x3/s2 + LN), then CSWin blocks (NHWC in and out)."""

    def __init__(self, in_dim, dim, depth, num_heads, split_size, mlp_ratio, drop_path_rates,
                 downsample, last_stage):
        super().__init__()
        self.downsample = ConvDownsample(in_dim, dim, LayerNorm) if downsample else None
        self.blocks = nn.ModuleList([
            CSWinBlock(dim, num_heads, split_size, mlp_ratio, drop_path_rates[j], last_stage)
            for j in range(depth)])

    def forward(self, x, with_cp=False):
        if self.downsample is not None:
            x = self.downsample(x)
        return run_blocks(self.blocks, x, with_cp)


@register_backbone
class CSWin(DenseBackbone):
    """CSWin Transformer backbone returning NCHW features at strides 4/8/16/32.

    Args:
        arch (str | dict): 'tiny' | 'small' | 'base', or a dict with ``depths``,
            ``embed_dim`` (or ``dims``), ``num_heads``, ``split_size`` (one per stage; the
            last stage attends globally and ignores its own) and optionally ``mlp_ratio``.
        in_channels (int): input image channels.
        out_indices (Sequence[int]): stages whose outputs are returned (each through a LN).
        drop_path_rate (float): stochastic depth of the last block, rising linearly from 0.
        frozen_stages (int): freeze the stem and stages ``< frozen_stages``; -1: none.
        norm_eval (bool): accepted for config compatibility (no BatchNorm).
        with_cp (bool | Sequence[bool]): activation checkpointing per block, all stages or
            per stage; outputs and gradients are unchanged.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads
            the release's ImageNet checkpoint (or the backbone of its UperNet checkpoint,
            with ``prefix='backbone.'``) strictly.
    """

    arch_dict_help = 'a dict with depths, embed_dim / dims, num_heads and split_size'
    # release: models/cswin.py (CSWin_64_12211_tiny_224, CSWin_64_24322_small_224,
    # CSWin_96_24322_base_224) and segmentation/configs/cswin/upernet_cswin_*.py
    arch_zoo = {
        'tiny': dict(depths=(1, 2, 21, 1), embed_dim=64, num_heads=(2, 4, 8, 16),
                     split_size=(1, 2, 7, 7)),
        'small': dict(depths=(2, 4, 32, 2), embed_dim=64, num_heads=(2, 4, 8, 16),
                      split_size=(1, 2, 7, 7)),
        'base': dict(depths=(2, 4, 32, 2), embed_dim=96, num_heads=(4, 8, 16, 32),
                     split_size=(1, 2, 7, 7)),
    }
    ARCH_KEYS = ('depths', 'dims', 'embed_dim', 'mlp_ratio', 'num_heads', 'split_size')

    def __init__(self, arch='tiny', in_channels=3, out_indices=(0, 1, 2, 3),
                 drop_path_rate=0.1, frozen_stages=-1, norm_eval=False, with_cp=False,
                 init_cfg=None):
        depths, dims, heads, splits, mlp_ratio = self._parse_arch(arch)
        check_common_args('CSWin', in_channels, drop_path_rate)
        num_stages = len(depths)
        super().__init__(num_stages, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        self.depths, self.dims, self.num_heads, self.split_size = depths, dims, heads, splits

        self.stem = ConvPatchEmbed(in_channels, dims[0])
        dpr = stage_drop_path_rates(drop_path_rate, depths)
        self.stages = nn.ModuleList([
            CSWinStage(dims[i - 1] if i else dims[0], dims[i], depths[i], heads[i], splits[i],
                       mlp_ratio, dpr[i], downsample=i > 0, last_stage=i == num_stages - 1)
            for i in range(num_stages)])
        self._build_out_norms(dims, LayerNorm)

        self.apply(self._init_weights)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        arch = cls.lookup_arch(arch)
        unknown = sorted(set(arch) - set(cls.ARCH_KEYS))
        if unknown:
            raise ValueError(f'CSWin: unknown arch keys {unknown}; valid keys: '
                             f'{list(cls.ARCH_KEYS)}')
        depths = tuple(arch.get('depths', ()))
        if 'dims' in arch:
            dims = tuple(arch['dims'])
        else:
            dims = tuple(int(arch.get('embed_dim', 0)) * 2 ** i for i in range(len(depths)))
        heads, splits = tuple(arch.get('num_heads', ())), tuple(arch.get('split_size', ()))
        mlp_ratio = arch.get('mlp_ratio', 4.)
        if not (len(depths) == len(dims) == len(heads) == len(splits)) or \
                not positive_ints(depths + dims + heads + splits):
            raise ValueError(f'CSWin: arch needs depths, embed_dim (or dims), num_heads and '
                             f'split_size as positive ints, one per stage, got {arch!r}')
        if not (isinstance(mlp_ratio, (int, float)) and mlp_ratio > 0):
            raise ValueError(f'CSWin: arch mlp_ratio must be a positive number, got '
                             f'{mlp_ratio!r}')
        for i, (dim, h) in enumerate(zip(dims, heads)):
            last = i == len(depths) - 1
            # stripe stages split channels and heads in half between the two branches
            if dim % h or (not last and (h % 2 or dim % 2)):
                raise ValueError(
                    f'CSWin: stage {i}: dims {dim} must divide into num_heads {h} heads'
                    + ('' if last else ', with an even number of heads and channels (two '
                       'stripe branches of half each)'))
        return depths, dims, heads, splits, float(mlp_ratio)

    @staticmethod
    def _init_weights(m):
        # as the release: truncated normal for linear layers, zero bias (convs keep the
        # PyTorch default)
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---- DenseBackbone hooks --------------------------------------------------------
    def stage_modules(self, i):
        return [self.stages[i], self.out_norms[i]]

    @staticmethod
    def read_checkpoint(path):
        """The release's loader order (segmentation/mmcv_custom/checkpoint.py):
        ``state_dict``, else ``state_dict_ema`` (timm's EMA weights), else ``model``."""
        ckpt = load_checkpoint_file(path)
        if isinstance(ckpt, dict) and 'state_dict_ema' in ckpt \
                and not any(k in ckpt for k in ('state_dict', 'model')):
            return {'state_dict': ckpt['state_dict_ema']}
        return ckpt

    @classmethod
    def convert_pretrained(cls, state_dict):
        """Map the release's keys onto ours, dropping the ImageNet classifier (``norm``,
        ``head``). Keys already in our layout come back unchanged; keys of neither layout
        are passed through for the strict loader to name."""
        out = {}
        for key, value in state_dict.items():
            if re.match(r'(norm|head)\.', key):
                continue  # ImageNet classifier: final norm and linear head
            out[_release_to_own(key)] = value
        return out

    # ---- forward --------------------------------------------------------------------
    def _run_stages(self, x):
        x = self.stem(x)
        for i, stage in enumerate(self.stages[:self.out_indices[-1] + 1]):  # skip unused
            x = stage(x, with_cp=self.with_cp[i])
            if i in self.out_indices:
                yield i, x


_RELEASE_RULES = (
    (re.compile(r'stage1_conv_embed\.0\.'), lambda m: 'stem.proj.'),
    (re.compile(r'stage1_conv_embed\.2\.'), lambda m: 'stem.norm.'),
    (re.compile(r'stage(\d)\.(\d+)\.'), lambda m: f'stages.{int(m[1]) - 1}.blocks.{m[2]}.'),
    (re.compile(r'merge(\d)\.'), lambda m: f'stages.{m[1]}.downsample.'),  # before stage m+1
    (re.compile(r'norm(\d)\.'), lambda m: f'out_norms.{int(m[1]) - 1}.'),  # dense file only
)


def _release_to_own(key):
    for pattern, repl in _RELEASE_RULES:
        m = pattern.match(key)
        if m:
            return repl(m) + key[m.end():]
    return key
