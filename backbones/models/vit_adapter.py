"""ViT-Adapter: the shared adapter module and the ``ViTAdapter`` backbone (DeiT-S/B + adapter).

Paper: `Vision Transformer Adapter for Dense Predictions` (Chen et al., ICLR 2023,
https://arxiv.org/abs/2205.08534); release github.com/czczup/ViT-Adapter @ fd64a51
(``detection/mmdet_custom/models/backbones/{vit_adapter,adapter_modules}.py``,
``base/vit.py``; the ``segmentation/mmseg_custom`` copies). A plain stride-16 network gets a
feature pyramid from a second, convolutional path (:class:`Adapter`):

* a spatial prior module (``spm``: conv stem with BN, maps c1..c4 at strides 4/8/16/32,
  1x1 convs to C; c2..c4 get a learned ``level_embed``) gives multi-scale tokens c;
* one interaction block per group of the plain network's blocks: an injector (deformable
  attention of the plain tokens x on the 3 levels of c, scaled by ``gamma``, init 0), the
  group's blocks on x, then an extractor (deformable attention of c on x, plus a ConvFFN
  with a depthwise 3x3 on each level); the last block has two extra extractors;
* c1 = ConvTranspose2d(c2) + c1; x is resized x4 / x2 / x1 / x0.5 (bilinear) and added
  (the detector adds the last x to every level, the release's segmentor the x after group
  i to level i: ``vit_features='last'`` / ``'per_interaction'``); the backbone puts a
  BatchNorm on each level (the release's SyncBN ``norm1..4``).

Two users: :class:`ViTAdapter` below and PlainMamba's detector
(:class:`backbones.models.plainmamba.PlainMamba` with ``adapter=dict(...)``; its release,
github.com/ChenhongyiYang/PlainMamba ``downstream/mmdetection/mmdet/models/backbones/
adapter_modules.py``, copies these modules: same keys, same computation, and only options
no config of it uses, ``down_stride=8`` and ``out_c1=False``, which are left out here).

The deformable attention is mmcv's ``MultiScaleDeformableAttention`` with its residual and
dropout off (:func:`deform_attn_class`): the same four linear layers, initialisation and
sampling as the release's Deformable-DETR ``MSDeformAttn``; mmcv runs its CUDA op on GPU and
its pure-PyTorch ``multi_scale_deformable_attn_pytorch`` elsewhere. mmcv is imported when an
adapter is first built, so this module (and every model without an adapter) imports without
it. It computes in float32 under autocast (the CUDA ops of both releases do).

``ViTAdapter`` is timm's DeiT (``deit_small_patch16_224`` / ``deit_base_patch16_224``: the
same ``patch_embed`` / ``pos_embed`` / ``blocks.i`` keys as the release's
``TIMMVisionTransformer``) on NHWC token maps, with the release's two additions: layer scale
on every block (timm's ``ls1`` / ``ls2``, the release's ``gamma1`` / ``gamma2``, init 1.0,
not in DeiT checkpoints) and, in the detector, 14x14 window attention in all but the last
block of each interaction group, q / k / v zero-padded bottom / right to a multiple of 14
and not masked (padded keys score 0 and carry v = 0), as the release's
``WindowedAttention``. The DeiT position table (224 px, 14x14 plus the unused class-token
slot) is resized bicubically to every input. Inputs are zero-padded bottom / right to a
multiple of 32 (the level sizes are h/8, h/16, h/32; mmdet pads to 32 and the release's
segmentation pipeline resizes to multiples of 32, so the tables' inputs are unchanged; the
release itself fails on other sizes) and the outputs cropped to ceil(h / stride).

Key layout: the release's (``patch_embed``, ``pos_embed``, ``blocks.i.*``), layer scales
``blocks.i.ls1.gamma`` (``gamma1``), the adapter under ``adapter.`` (release: ``spm``,
``interactions``, ``level_embed``, ``up`` at the top), the output norms ``out_norms.i``
(``norm{i+1}``). :meth:`ViTAdapter.convert_pretrained` maps a DeiT checkpoint (``model``
wrapper; ``cls_token``, ``norm``, ``head`` dropped) and a release det/seg backbone.
"""
import math
import re
from functools import partial

import timm
import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from timm.layers import Attention, DropPath
from torch import nn

from ..layers import LayerNorm, run_blocks
from .base import DenseBackbone, check_common_args, per_stage_flags, positive_ints
from .lr_decay import LayerDecayOptimWrapperConstructor
from .registry import register_backbone, register_optim_constructor

__all__ = ['ViTAdapter', 'Adapter', 'WindowAttention', 'deform_attn_class']

AdapterNorm = partial(LayerNorm, eps=1e-6)
#: The last input size multiple the pyramid needs (levels at h/8, h/16, h/32).
SIZE_DIVISOR = 32
VIT_FEATURES = ('last', 'per_interaction', None)


# ---------------------------------------------------------------------------------------
# Multi-scale deformable attention (mmcv's, imported on first use)
# ---------------------------------------------------------------------------------------
_DEFORM_ATTN = []


def deform_attn_class():
    """The deformable attention layer: mmcv's ``MultiScaleDeformableAttention`` returning
    the attention alone (no residual: zero identity, no dropout), batch first, computed in
    float32. Built on first call, so that importing this module does not need mmcv."""
    if _DEFORM_ATTN:
        return _DEFORM_ATTN[0]
    try:
        from mmcv.ops import MultiScaleDeformableAttention
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"the ViT-Adapter's deformable attention is mmcv's MultiScaleDeformableAttention "
            f'(mmcv.ops), which cannot be imported: {err}', name=err.name) from err

    class DeformAttn(MultiScaleDeformableAttention):
        """Deformable attention of ``query`` on the levels of ``value`` (release:
        ``MSDeformAttn(d_model, n_levels, n_heads, n_points, ratio)``, same keys)."""

        def __init__(self, dim, num_heads, num_levels, num_points, ratio=1.0):
            super().__init__(embed_dims=dim, num_heads=num_heads, num_levels=num_levels,
                             num_points=num_points, dropout=0., batch_first=True,
                             value_proj_ratio=ratio)

        def forward(self, query, value, reference_points, spatial_shapes, level_start_index):
            with torch.autocast(query.device.type, enabled=False):
                return super().forward(query.float(), value=value.float(),
                                       identity=query.new_zeros((), dtype=torch.float32),
                                       reference_points=reference_points,
                                       spatial_shapes=spatial_shapes,
                                       level_start_index=level_start_index)

    # a module-level name, so a model holding it pickles
    DeformAttn.__module__, DeformAttn.__qualname__ = __name__, 'DeformAttn'
    globals()['DeformAttn'] = DeformAttn
    _DEFORM_ATTN.append(DeformAttn)
    return DeformAttn


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


def _checkpointed(fn, *args, with_cp=False):
    # the release checkpoints injector / extractor on their own (``with_cp``)
    if with_cp and torch.is_grad_enabled():
        return cp.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


# ---------------------------------------------------------------------------------------
# Adapter modules
# ---------------------------------------------------------------------------------------
class ConvFFN(nn.Module):
    """fc1 -> one depthwise 3x3 on each level's map -> GELU -> fc2 (tokens)."""

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
        self.attn = deform_attn_class()(dim, num_heads, 1, num_points, ratio)
        self.ffn = ConvFFN(dim, int(dim * cffn_ratio))
        self.ffn_norm = AdapterNorm(dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, c, x, inputs, shapes):
        c = c + self.attn(self.query_norm(c), self.feat_norm(x), *inputs).to(c.dtype)
        return c + self.drop_path(self.ffn(self.ffn_norm(c), shapes))


class Injector(nn.Module):
    """x + gamma * attn(LN(x), LN(c)), gamma initialised to ``init_values`` (release: 0)."""

    def __init__(self, dim, num_heads, num_points, ratio, init_values=0.):
        super().__init__()
        self.query_norm, self.feat_norm = AdapterNorm(dim), AdapterNorm(dim)
        self.attn = deform_attn_class()(dim, num_heads, 3, num_points, ratio)
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x, c, inputs):
        return x + self.gamma * self.attn(self.query_norm(x), self.feat_norm(c), *inputs)


class InteractionBlock(nn.Module):
    """Injector before and extractor(s) after one group of the plain network's blocks."""

    def __init__(self, dim, num_heads, num_points, ratio, cffn_ratio, drop_path,
                 init_values=0., extra=False, with_cp=False):
        super().__init__()
        self.with_cp = with_cp
        self.injector = Injector(dim, num_heads, num_points, ratio, init_values)
        self.extractor = Extractor(dim, num_heads, num_points, ratio, cffn_ratio, drop_path)
        self.extra_extractors = nn.Sequential(*[
            Extractor(dim, num_heads, num_points, ratio, cffn_ratio, drop_path)
            for _ in range(2)]) if extra else None

    def inject(self, x, c, inputs):
        return _checkpointed(lambda x, c: self.injector(x, c, inputs), x, c,
                             with_cp=self.with_cp)

    def extract(self, c, x, inputs, shapes):
        for extractor in (self.extractor, *(self.extra_extractors or ())):
            c = _checkpointed(lambda c, x, m=extractor: m(c, x, inputs, shapes), c, x,
                              with_cp=self.with_cp)
        return c


def _conv_bn_relu(cin, cout, stride):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.SyncBatchNorm(cout),
            nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """ResNet-like conv stem -> c1..c4 (strides 4/8/16/32), each 1x1-projected to C. SyncBN
    as both releases (plain BN outside a process group; reverted to BN for CPU DDP)."""

    def __init__(self, inplanes, dim, in_channels=3):
        super().__init__()
        p = inplanes
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, p, 2), *_conv_bn_relu(p, p, 1),
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


class Adapter(nn.Module):
    """Spatial prior module + one interaction block per block group of a plain stride-16
    network; turns it into four pre-norm NCHW maps at strides 4/8/16/32, C channels each.

    Args:
        dim (int): the plain network's width C.
        num_groups (int): block groups, one interaction block each (both releases: 4).
        drop_path (float): DropPath of every ConvFFN (both releases pass the network's
            maximum drop_path_rate to all of them).
        conv_inplane (int): width of the spatial prior module (release: 64).
        deform_num_heads (int): heads of every deformable attention.
        n_points (int): sampling points per head and level (release: 4).
        cffn_ratio (float): ConvFFN hidden ratio (release: 0.25).
        deform_ratio (float): value projection ratio (release: 1.0; ViT-Adapter-B 0.5).
        init_values (float): initial injector ``gamma`` (release: 0).
        use_extra_extractor (bool): two more extractors in the last interaction block.
        vit_features (str | None): the plain tokens added to the four levels: ``'last'``
            (the final ones on every level: both releases' detectors), ``'per_interaction'``
            (those after group i on level i: ViT-Adapter's segmentor) or None.
        in_channels (int): image channels (the spatial prior module's input).
        with_cp (bool | Sequence[bool]): checkpoint injector and extractors (per group).
    """

    def __init__(self, dim, num_groups=4, drop_path=0., conv_inplane=64, deform_num_heads=6,
                 n_points=4, cffn_ratio=0.25, deform_ratio=1.0, init_values=0.,
                 use_extra_extractor=True, vit_features='last', in_channels=3, with_cp=False):
        super().__init__()
        value_dim = int(dim * deform_ratio)
        if not positive_ints((dim, num_groups, conv_inplane, deform_num_heads, n_points)) \
                or value_dim % deform_num_heads or not value_dim:
            raise ValueError(
                f'Adapter: need positive ints dim, num_groups, conv_inplane, deform_num_heads, '
                f'n_points with int(dim * deform_ratio) divisible by deform_num_heads, got '
                f'dim={dim}, num_groups={num_groups}, conv_inplane={conv_inplane}, '
                f'deform_num_heads={deform_num_heads}, n_points={n_points}, '
                f'deform_ratio={deform_ratio}')
        if vit_features not in VIT_FEATURES:
            raise ValueError(f'Adapter: vit_features must be one of {VIT_FEATURES}, got '
                             f'{vit_features!r}')
        self.vit_features = vit_features
        with_cp = per_stage_flags(with_cp, num_groups, 'Adapter')
        self.level_embed = nn.Parameter(torch.empty(3, dim))
        self.spm = SpatialPriorModule(conv_inplane, dim, in_channels)
        self.interactions = nn.Sequential(*[
            InteractionBlock(dim, deform_num_heads, n_points, deform_ratio, cffn_ratio,
                             drop_path, init_values,
                             extra=use_extra_extractor and i == num_groups - 1,
                             with_cp=with_cp[i])
            for i in range(num_groups)])
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.apply(self._init_weights)
        for m in self.modules():
            if isinstance(m, deform_attn_class()):
                m.init_weights()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def _init_weights(m):
        # the releases' adapter init (their BatchNorm2d test misses SyncBN, whose default
        # init is the same ones / zeros)
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
        """``embed(img)`` -> NHWC stride-16 tokens; ``run_group(i, x)`` -> x after the
        blocks of group i (the plain network's). Returns the four maps of the image
        zero-padded bottom / right to a multiple of 32."""
        x = F.pad(x, (0, -x.shape[-1] % SIZE_DIVISOR, 0, -x.shape[-2] % SIZE_DIVISOR))
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
        xs = []
        for i, block in enumerate(self.interactions):
            x = block.inject(x.reshape(B, H * W, C), c, inj).view(B, H, W, C)
            x = run_group(i, x)
            xs.append(x)
            c = block.extract(c, x.reshape(B, H * W, C), ext, shapes)

        c2, c3, c4 = (ci.transpose(1, 2).reshape(B, C, *s)
                      for ci, s in zip(c.split([a * b for a, b in shapes], dim=1), shapes))
        outs = [self.up(c2) + c1, c2, c3, c4]
        if self.vit_features is not None:
            if self.vit_features == 'last':
                xs = xs[-1:] * len(outs)
            for i, (xi, scale) in enumerate(zip(xs, (4, 2, 1, 0.5))):
                xi = xi.permute(0, 3, 1, 2)
                outs[i] = outs[i] + (xi if scale == 1 else F.interpolate(
                    xi, scale_factor=scale, mode='bilinear', align_corners=False))
        return tuple(outs)


# ---------------------------------------------------------------------------------------
# ViT-Adapter over timm's DeiT
# ---------------------------------------------------------------------------------------
class WindowAttention(Attention):
    """timm's ViT attention on NHWC maps: global (``window_size`` None) or inside
    ``window_size`` squared windows of the map, q / k / v zero-padded bottom / right and not
    masked (the release's ``WindowedAttention``). Explicit matmuls while traced, so the
    complexity counter sees them."""

    window_size = None

    def forward(self, x, attn_mask=None, is_causal=False):
        if attn_mask is not None or is_causal:
            raise ValueError('WindowAttention: attention masks are not supported')
        B, H, W, C = x.shape
        qkv = self.qkv(x)
        ws = self.window_size
        if ws:
            ph, pw = -H % ws, -W % ws
            qkv = F.pad(qkv, (0, 0, 0, pw, 0, ph))
            Hp, Wp = H + ph, W + pw
            qkv = qkv.view(B, Hp // ws, ws, Wp // ws, ws, -1).transpose(2, 3) \
                .reshape(-1, ws * ws, qkv.shape[-1])
        else:
            qkv = qkv.reshape(B, H * W, -1)
        n, N = qkv.shape[:2]
        q, k, v = qkv.view(n, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn and not torch.jit.is_tracing():
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop.p if self.training else 0.)
        else:
            y = self.attn_drop(((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)) @ v
        y = self.norm(y.transpose(1, 2).reshape(n, N, self.attn_dim))
        if ws:
            y = y.view(B, Hp // ws, Wp // ws, ws, ws, -1).transpose(2, 3) \
                .reshape(B, Hp, Wp, -1)[:, :H, :W]
        else:
            y = y.view(B, H, W, -1)
        return self.proj_drop(self.proj(y))


def resize_pos_embed(pos_embed, src_shape, dst_shape):
    """(1, Hs*Ws, C) grid table -> (1, Hd, Wd, C), bicubic, align_corners False (the
    release's ``_get_pos_embed``, every forward); float32 (no half bicubic on CPU)."""
    C = pos_embed.shape[-1]
    grid = pos_embed.float().reshape(1, *src_shape, C).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(dst_shape), mode='bicubic', align_corners=False)
    return grid.permute(0, 2, 3, 1).to(pos_embed.dtype)


@register_backbone
class ViTAdapter(DenseBackbone):
    """ViT-Adapter (DeiT + adapter) returning four NCHW maps at strides 4/8/16/32, C each.

    Args:
        arch (str | dict): ``'small'`` (DeiT-S, the tables' ViT-Adapter-S), ``'base'``
            (DeiT-B) or a dict with the keys of :attr:`arch_zoo` entries (``model_name``
            optional: the timm model whose arguments it overrides).
        in_channels (int): input image channels.
        img_size (int): pretraining resolution (the position table is for img_size / 16
            squared plus the class token's slot).
        out_indices (Sequence[int]): levels (0..3: strides 4/8/16/32) to return.
        drop_path_rate (float): stochastic depth of the last ViT block, linear from 0 (timm);
            the adapter's ConvFFNs all use this maximum, as the release.
        window_size (int | None): window of the windowed blocks (release detector: 14);
            None: every block global (release segmentor).
        global_blocks (Sequence[int] | None): blocks with global attention when
            ``window_size`` is set; None: the last block of each interaction group (the
            release detector's 2, 5, 8, 11).
        interaction_indexes (Sequence[Sequence[int]] | None): ``[first, last]`` block of each
            of the four interaction groups; None: four equal groups (release: [[0, 2],
            [3, 5], [6, 8], [9, 11]]).
        layer_scale (bool): ``ls1`` / ``ls2`` on every block, init 1.0 (release: True).
        vit_features (str | None): ``'last'`` (release detector) or ``'per_interaction'``
            (release segmentor); see :class:`Adapter`.
        adapter (dict, optional): more :class:`Adapter` arguments (``conv_inplane``,
            ``n_points``, ``cffn_ratio``, ``init_values``, ``use_extra_extractor``; the
            release's values are the defaults).
        frozen_stages (int): freeze patch embedding, position table, spatial prior module
            and level embeddings, and the blocks, interaction block and output norm of
            groups ``< frozen_stages`` (-1: none).
        norm_eval (bool): keep the BatchNorms (spatial prior module, outputs) in eval mode.
        with_cp (bool | Sequence[bool]): activation checkpointing of every block, injector
            and extractor, for all groups or per group.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)`` loads a DeiT
            checkpoint (or a release det/seg backbone) strictly; the adapter, layer scales and
            output norms are new.
    """

    arch_dict_help = ('dict(embed_dim=..., depth=..., num_heads=..., deform_num_heads=..., '
                      'deform_ratio=...)')
    arch_zoo = {  # release det/seg configs mask_rcnn_deit_adapter_{small,base}_fpn_1x_coco.py
        'small': dict(model_name='deit_small_patch16_224', embed_dim=384, depth=12,
                      num_heads=6, deform_num_heads=6, deform_ratio=1.0),
        'base': dict(model_name='deit_base_patch16_224', embed_dim=768, depth=12,
                     num_heads=12, deform_num_heads=12, deform_ratio=0.5),
    }
    #: Dense-model keys a DeiT checkpoint lacks: the adapter, the output norms and the layer
    #: scales (``blocks.<i>.ls1`` / ``ls2``) of up to 64 blocks.
    new_key_prefixes = ('adapter.', 'out_norms.') + tuple(f'blocks.{i}.ls' for i in range(64))
    patch_size = 16

    def __init__(self, arch='small', in_channels=3, img_size=224, out_indices=(0, 1, 2, 3),
                 drop_path_rate=0., window_size=14, global_blocks=None,
                 interaction_indexes=None, layer_scale=True, vit_features='last',
                 adapter=None, frozen_stages=-1, norm_eval=False, with_cp=False,
                 init_cfg=None):
        cfg = self._parse_arch(arch)
        check_common_args('ViTAdapter', in_channels, drop_path_rate)
        depth = cfg['depth']
        groups = self._parse_groups(interaction_indexes, depth)
        windows = self._parse_windows(window_size, global_blocks, groups, depth)
        if not (isinstance(img_size, int) and img_size >= self.patch_size):
            raise ValueError(f'ViTAdapter: img_size must be an int >= {self.patch_size}, got '
                             f'{img_size!r}')
        super().__init__(len(groups), out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        self.groups, self.dim = groups, cfg['embed_dim']
        # timm's DeiT; its class token, final norm and classifier are not used
        vit = timm.create_model(
            cfg.get('model_name', 'deit_small_patch16_224'), pretrained=False, num_classes=0,
            global_pool='', final_norm=False, img_size=img_size, in_chans=in_channels,
            embed_dim=cfg['embed_dim'], depth=depth, num_heads=cfg['num_heads'],
            drop_path_rate=drop_path_rate, init_values=1.0 if layer_scale else None,
            attn_layer=WindowAttention, dynamic_img_size=True)
        self.patch_embed, self.pos_embed, self.blocks = vit.patch_embed, vit.pos_embed, \
            vit.blocks
        for block, ws in zip(self.blocks, windows):
            block.attn.window_size = ws
        self.pos_grid = (img_size // self.patch_size,) * 2
        self.adapter = Adapter(self.dim, len(groups), drop_path_rate,
                               deform_num_heads=cfg['deform_num_heads'],
                               deform_ratio=cfg['deform_ratio'], vit_features=vit_features,
                               in_channels=in_channels, with_cp=self.with_cp,
                               **(adapter or {}))
        self._build_out_norms((self.dim,) * self.num_stages, nn.SyncBatchNorm)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch):
        cfg = cls.lookup_arch(arch)
        need = {'embed_dim', 'depth', 'num_heads', 'deform_num_heads', 'deform_ratio'}
        if not need <= set(cfg) <= need | {'model_name'}:
            raise ValueError(f'ViTAdapter: arch dict needs the keys {sorted(need)} (and '
                             f'optionally model_name), got {sorted(cfg)}')
        if not positive_ints((cfg['embed_dim'], cfg['depth'], cfg['num_heads'])) \
                or cfg['embed_dim'] % cfg['num_heads']:
            raise ValueError(f'ViTAdapter: arch embed_dim, depth, num_heads must be positive '
                             f'ints with embed_dim divisible by num_heads, got {cfg}')
        return cfg

    @staticmethod
    def _parse_groups(indexes, depth):
        if indexes is None:
            if depth % 4:
                raise ValueError(f'ViTAdapter: depth {depth} does not split into 4 equal '
                                 f'interaction groups; give interaction_indexes')
            n = depth // 4
            return tuple(range(i * n, (i + 1) * n) for i in range(4))
        bounds = [tuple(g) for g in indexes]
        flat = [b for g in bounds for b in g]
        if not bounds or any(len(g) != 2 for g in bounds) or flat[0] != 0 \
                or flat[-1] != depth - 1 or any(a > b for a, b in bounds) \
                or any(bounds[i + 1][0] != bounds[i][1] + 1 for i in range(len(bounds) - 1)):
            raise ValueError(f'ViTAdapter: interaction_indexes must be [first, last] block '
                             f'pairs covering blocks 0..{depth - 1} in order, got {indexes}')
        return tuple(range(a, b + 1) for a, b in bounds)

    @staticmethod
    def _parse_windows(window_size, global_blocks, groups, depth):
        """Window size per block (None: global)."""
        if window_size is None:
            return (None,) * depth
        if not positive_ints((window_size,)):
            raise ValueError(f'ViTAdapter: window_size must be a positive int or None, got '
                             f'{window_size!r}')
        if global_blocks is None:
            global_blocks = tuple(g[-1] for g in groups)
        global_blocks = set(global_blocks)
        if not global_blocks <= set(range(depth)):
            raise ValueError(f'ViTAdapter: global_blocks must be block indices below '
                             f'{depth}, got {sorted(global_blocks)}')
        return tuple(None if i in global_blocks else window_size for i in range(depth))

    # ---- DenseBackbone hooks --------------------------------------------------------
    @property
    def stem(self):
        return self.patch_embed

    def stage_modules(self, i):
        return [self.blocks[j] for j in self.groups[i]] + [self.adapter.interactions[i],
                                                            self.out_norms[i]]

    def _frozen_modules(self):
        extra = [self.adapter.spm] if self.frozen_stages >= 0 else []
        return super()._frozen_modules() + extra

    def _freeze_stages(self):
        super()._freeze_stages()
        if self.frozen_stages >= 0:  # the position and level embeddings belong to the stem
            self.pos_embed.requires_grad = False
            self.adapter.level_embed.requires_grad = False

    @classmethod
    def convert_pretrained(cls, state_dict):
        """Map a DeiT checkpoint (``cls_token``, final ``norm``, ``head`` dropped) or a
        release det/seg ViTAdapter (``backbone.`` of a full checkpoint stripped; ``gamma1`` /
        ``gamma2`` -> ``ls1.gamma`` / ``ls2.gamma``; ``spm``, ``interactions``,
        ``level_embed``, ``up`` under ``adapter.``; ``norm<k>`` -> ``out_norms.<k-1>``)
        onto our keys. Our own layout passes unchanged; unknown keys are kept for the
        strict loader to name."""
        if any(k.startswith('backbone.') for k in state_dict):
            state_dict = {k[9:]: v for k, v in state_dict.items() if k.startswith('backbone.')}
        out = {}
        for key, value in state_dict.items():
            head, _, rest = key.partition('.')
            if key == 'cls_token' or head in ('norm', 'head'):
                continue  # DeiT's class token and classifier (final norm, head)
            gamma = re.fullmatch(r'(blocks\.\d+)\.gamma([12])', key)
            if gamma:
                key = f'{gamma.group(1)}.ls{gamma.group(2)}.gamma'
            elif head in ('spm', 'interactions', 'level_embed', 'up'):
                key = f'adapter.{key}'
            elif re.fullmatch(r'norm[1-9]', head):
                key = f'out_norms.{int(head[4:]) - 1}.{rest}'
            out[key] = value
        return out

    # ---- forward --------------------------------------------------------------------
    def _embed(self, img):
        """Patch embedding + bicubically resized position table: NHWC stride-16 tokens (in
        float32 under autocast, as the release's sum with the fp32 table)."""
        x = self.patch_embed(img)
        return x + resize_pos_embed(self.pos_embed[:, 1:], self.pos_grid, x.shape[1:3])

    def _run_group(self, i, x):
        return run_blocks([self.blocks[j] for j in self.groups[i]], x, self.with_cp[i])

    def forward_stages(self, x):
        """The four levels before the output norms, cropped to the (unpadded) input."""
        H, W = x.shape[-2:]
        feats = self.adapter(x, self._embed, self._run_group)
        return tuple(feats[i][..., :-(-H // s), :-(-W // s)].contiguous()
                     for i, s in zip(self.out_indices, (4, 8, 16, 32)))

    def forward(self, x):
        return tuple(self.out_norms[i](y) for i, y in zip(self.out_indices,
                                                          self.forward_stages(x)))


# ---------------------------------------------------------------------------------------
# Optimizer: the release segmentor's layer-wise lr decay
# ---------------------------------------------------------------------------------------
def vit_layer_id(name, num_layers):
    """Layer of parameter ``name`` (of a segmentor / detector) in the release's rule
    (``get_num_layer_for_vit``), ``num_layers`` being the config's value + 2: position
    table and patch embedding 0, ``blocks.i`` i + 1, everything else (adapter, output
    norms, heads) num_layers - 1."""
    if name in ('backbone.cls_token', 'backbone.pos_embed') \
            or name.startswith('backbone.patch_embed.'):
        return 0
    m = re.match(r'backbone\.blocks\.(\d+)\.', name)
    return int(m.group(1)) + 1 if m else num_layers - 1


if LayerDecayOptimWrapperConstructor is not None:  # the training stack is installed
    @register_optim_constructor
    class ViTLayerDecayOptimWrapperConstructor(LayerDecayOptimWrapperConstructor):
        """The ViT-Adapter release's ``LayerDecayOptimizerConstructor`` (segmentation/
        mmcv_custom/layer_decay_optimizer_constructor.py, used by its UperNet configs) on
        :class:`ViTAdapter`'s key names: ``paramwise_cfg=dict(num_layers=n,
        layer_decay_rate=r)``, layers by :func:`vit_layer_id` (:mod:`backbones.engine.optim`
        has the rule; the position table and level embeddings decay, as in the release)."""
        rate_key = 'layer_decay_rate'
        layer_id = staticmethod(vit_layer_id)

    __all__.append('ViTLayerDecayOptimWrapperConstructor')
