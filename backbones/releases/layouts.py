"""Key layouts of released detectors and segmentors, one converter each.

A release checkpoint holds the whole model: ``backbone.*`` in the key layout of the code it
was trained with, and the neck / heads (``neck``, ``rpn_head``, ``roi_head``, ``decode_head``,
``auxiliary_head``), whose keys mmdet 2.x and 3.x, and mmseg 0.x and 1.x, share
(``../shared/reference/released_checkpoints.md``). A :class:`Layout` turns the backbone part
into the names the suite backbone's own ``convert_pretrained`` reads (the ImageNet layout of
that family: timm's checkpoint filters cover official ConvNeXt, Swin, PVTv2 and FocalNet;
VMamba and PlainMamba convert their release names themselves) plus the dense-only keys (the
per-stage output norms) already in the suite's names. Heads pass as they are; the strict check
in :mod:`.convert` decides whether they fit.

A family arriving later adds one :func:`register_layout` call here (and its manifest lines).
"""
import re
from dataclasses import dataclass, field
from typing import Callable

__all__ = ['Layout', 'LAYOUTS', 'register_layout', 'get_layout', 'detect_layouts']

#: name -> Layout
LAYOUTS = {}


@dataclass(frozen=True)
class Layout:
    """How one code base names a backbone inside its detector / segmentor checkpoints.

    Args:
        name: the manifest's ``layout`` value.
        codebase: what trained the checkpoints, for messages.
        signature: regexes of backbone keys (without ``backbone.``) that together identify
            the layout; every one must match some key.
        rename: ``{release key: tensor}`` -> ``(to_convert, own)``: keys for the backbone's
            ``convert_pretrained`` and keys already in the suite backbone's names, both
            ``{key: (release key, tensor)}``. Default: everything to ``convert_pretrained``.
        dropped: ``{regex: why}`` for release keys nothing may use: buffers the model
            rebuilds from its config, layers the release builds but its forward never reads.
            Any other key the conversion leaves unused is an error.
    """
    name: str
    codebase: str
    signature: tuple
    rename: Callable = None
    dropped: dict = field(default_factory=dict)

    def matches(self, keys):
        return all(any(re.fullmatch(sig, k) for k in keys) for sig in self.signature)

    def why_dropped(self, key):
        return next((why for pat, why in self.dropped.items() if re.fullmatch(pat, key)), None)

    def split(self, backbone):
        if self.rename is None:
            return {k: (k, v) for k, v in backbone.items()}, {}
        return self.rename(backbone)


def register_layout(layout):
    if layout.name in LAYOUTS:
        raise ValueError(f'layout {layout.name!r} is registered twice')
    LAYOUTS[layout.name] = layout
    return layout


def get_layout(name):
    if name not in LAYOUTS:
        raise KeyError(f'unknown release layout {name!r}; known: {", ".join(sorted(LAYOUTS))}')
    return LAYOUTS[name]


def detect_layouts(backbone_keys):
    """Names of the layouts whose signature the keys carry (usually one, or none)."""
    keys = list(backbone_keys)
    return [name for name, lay in LAYOUTS.items() if lay.matches(keys)]


# ---- helpers ---------------------------------------------------------------------------
def _out_norms(pattern):
    """A rename sending keys matching ``pattern`` (group 1: stage, group 2: rest) to the
    suite's ``out_norms.<stage>.<rest>``, everything else to ``convert_pretrained``."""
    regex = re.compile(pattern)

    def rename(backbone):
        to_convert, own = {}, {}
        for key, value in backbone.items():
            m = regex.fullmatch(key)
            if m:
                own[f'out_norms.{m[1]}.{m[2]}'] = (key, value)
            else:
                to_convert[key] = (key, value)
        return to_convert, own
    return rename


_NORM_I = r'norm(\d)\.(weight|bias)'
_REL_INDEX = {r'.*\.relative_position_index':
              'a buffer the model rebuilds from its window size'}


# ---- OpenMMLab's SwinTransformer (mmdet / mmseg model zoo) ------------------------------
# mmdet's swin_converter takes the official Swin layout to this one and reorders the patch
# merging's 4C channels from the official concatenation (x0, x1, x2, x3) = offsets (0,0),
# (1,0), (0,1), (1,1) to the order nn.Unfold produces, (0,0), (0,1), (1,0), (1,1), i.e.
# indices [0, 2, 1, 3] of the 4 groups, and from group-major to channel-major. Undone here.
_UNFOLD = [0, 2, 1, 3]  # its own inverse


def unfold_to_official(value):
    """A patch-merging ``reduction`` weight (out, 4C) or ``norm`` weight / bias (4C) from
    mmdet's unfold order (channel-major, groups (0,0), (0,1), (1,0), (1,1)) back to the
    official concatenation order (group-major, groups x0..x3)."""
    if value.dim() == 2:
        out, four_c = value.shape
        return value.reshape(out, four_c // 4, 4).transpose(1, 2)[:, _UNFOLD].reshape(out, four_c)
    return value.reshape(-1, 4).t()[_UNFOLD].reshape(-1)


_SWIN_MM = [(re.compile(r'^stages\.'), 'layers.'), (re.compile(r'\.attn\.w_msa\.'), '.attn.'),
            (re.compile(r'\.ffn\.layers\.0\.0\.'), '.mlp.fc1.'),
            (re.compile(r'\.ffn\.layers\.1\.'), '.mlp.fc2.'),
            (re.compile(r'^patch_embed\.projection\.'), 'patch_embed.proj.')]


def _swin_mm(backbone):
    to_convert, own = _out_norms(_NORM_I)(backbone)
    renamed = {}
    for key, (src, value) in to_convert.items():
        for pattern, new in _SWIN_MM:
            key = pattern.sub(new, key)
        if re.fullmatch(r'layers\.\d+\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)',
                        key):
            value = unfold_to_official(value)
        renamed[key] = (src, value)
    return renamed, own


register_layout(Layout(
    'swin-mm', 'mmdet 2.x/3.x / mmseg 0.x/1.x SwinTransformer (OpenMMLab model zoo)',
    signature=(r'stages\.\d+\.blocks\.\d+\.attn\.w_msa\.qkv\.weight',
               r'patch_embed\.projection\.weight', _NORM_I),
    rename=_swin_mm, dropped=_REL_INDEX))

# ---- official Swin (Swin-Transformer-Semantic-Segmentation, mmseg 0.11 fork) ------------
register_layout(Layout(
    'swin-official', 'official Swin Transformer dense code (Swin-Transformer-Semantic-'
    'Segmentation, mmseg 0.11)',
    signature=(r'layers\.\d+\.blocks\.\d+\.attn\.qkv\.weight', r'patch_embed\.proj\.weight',
               _NORM_I),
    rename=_out_norms(_NORM_I),
    dropped={**_REL_INDEX, r'.*\.attn_mask': 'a buffer the model rebuilds from its input'}))

# ---- FocalNet detection (Swin-Transformer-Object-Detection fork, mmdet 2.11) ------------
register_layout(Layout(
    'focalnet-mm', 'FocalNet detection code (Swin-Transformer-Object-Detection fork, mmdet 2.x)',
    signature=(r'layers\.\d+\.blocks\.\d+\.modulation\.f\.weight', r'patch_embed\.proj\.weight',
               _NORM_I),
    rename=_out_norms(_NORM_I)))

# ---- PVTv2 detection (whai362/PVT, mmdet 2.13): stage norms are part of the model ----
# (its last stage keeps q / kv: TransNeXt, which has every other PVTv2 key, has one qkv there)
register_layout(Layout(
    'pvtv2-official', 'PVTv2 detection code (whai362/PVT detection/pvt_v2.py, mmdet 2.13)',
    signature=(r'patch_embed1\.proj\.weight', r'block1\.\d+\.attn\.q\.weight',
               r'block4\.\d+\.attn\.q\.weight', r'norm4\.weight')))

# ---- ConvNeXt segmentation (facebookresearch/ConvNeXt, BEiT's mmseg 0.x code) ----------
register_layout(Layout(
    'convnext-official', 'ConvNeXt segmentation code (facebookresearch/ConvNeXt, mmseg 0.x)',
    signature=(r'downsample_layers\.0\.0\.weight', r'stages\.\d+\.\d+\.dwconv\.weight', _NORM_I),
    rename=_out_norms(_NORM_I)))

# ---- Twins segmentation (Meituan-AutoML/Twins gvt.py, mmseg 0.12) -----------------------
register_layout(Layout(
    'twins-official', 'Twins segmentation code (Meituan-AutoML/Twins segmentation/gvt.py, '
    'mmseg 0.12)',
    signature=(r'patch_embeds\.0\.proj\.weight', r'pos_block\.0\.proj\.0\.weight',
               r'norm_list\.0\.weight'),
    rename=_out_norms(r'norm_list\.(\d)\.(weight|bias)'),
    dropped={r'norm\.(weight|bias)': 'the ImageNet final norm: built, never read by the '
                                     'segmentation forward (it uses norm_list)',
             r'head\.(weight|bias)': 'the ImageNet classifier: built, never read'}))

# ---- VMamba detection / segmentation (MzeroMiko/VMamba, mmdet 3.3 / mmseg 1.2.2) --------
# VMamba.convert_pretrained reads the release's names (V0 legacy and current, V2, outnorm<i>).
register_layout(Layout(
    'vmamba-mm', 'VMamba detection / segmentation code (MM_VSSM, mmdet 3.3 / mmseg 1.2.2)',
    signature=(r'outnorm0\.weight', r'layers\.\d+\.blocks\.\d+\.(op|self_attention)\.A_logs')))

# ---- PlainMamba (ChenhongyiYang/PlainMamba: mmdet 2.25 adapter, mmseg 0.23 seg) -----------
# PlainMamba.convert_pretrained reads both: ad_norm<k> / spm / interactions / level_embed /
# up of the adapter, norm_layer<i> + ln1 of the segmentation backbone.
register_layout(Layout(
    'plainmamba-adapter', 'PlainMamba-Adapter detection code (mmdet 2.25 fork)',
    signature=(r'spm\.stem\.0\.weight', r'interactions\.0\.injector\.gamma',
               r'layers\.\d+\.mamba\.A_log', r'ad_norm1\.weight')))
register_layout(Layout(
    'plainmamba-seg', 'PlainMambaSeg segmentation code (mmseg 0.23 fork)',
    signature=(r'pos_embed', r'layers\.\d+\.mamba\.A_log', r'norm_layer\d+\.weight',
               r'ln1\.weight')))

# ---- families whose own converter reads their release's dense layout ---------------------
# (CSWin, UniFormer: norm<i> -> out_norms; HorNet, InternImage: the same names as ImageNet)
register_layout(Layout(
    'cswin-seg', 'CSWin segmentation code (microsoft/CSWin-Transformer, Swin-seg fork, '
    'mmseg 0.11)',
    signature=(r'stage1_conv_embed\.0\.weight', r'stage\d\.\d+\.attns\.0\.get_v\.weight',
               r'norm1\.weight')))
register_layout(Layout(
    'uniformer-seg', 'UniFormer segmentation code (Sense-X/UniFormer, mmseg 0.13)',
    signature=(r'patch_embed1\.proj\.weight', r'blocks3\.\d+\.attn\.qkv\.weight',
               r'norm4\.weight')))
register_layout(Layout(
    'hornet-seg', 'HorNet segmentation code (raoyongming/HorNet, BEiT\'s mmseg 0.x code)',
    signature=(r'downsample_layers\.0\.0\.weight', r'stages\.\d+\.\d+\.gnconv\.proj_in\.weight',
               _NORM_I)))
register_layout(Layout(
    'internimage-seg', 'InternImage segmentation code (OpenGVLab/InternImage, mmseg 0.27)',
    signature=(r'patch_embed\.conv1\.weight', r'levels\.\d+\.blocks\.\d+\.dcn\.offset\.weight')))

# ---- TransNeXt (DaiShiResearch/TransNeXt transnext_native.py, mmdet 2.28 / mmseg 0.30) ----
# TransNeXt.convert_pretrained reads the release's names; norm<i> are its trunk's stage norms;
# the size-dependent bias tables are non-persistent buffers, never in the files.
register_layout(Layout(
    'transnext-official', 'TransNeXt detection / segmentation code (DaiShiResearch/TransNeXt '
    'transnext_native.py, mmdet 2.28 / mmseg 0.30)',
    signature=(r'patch_embed1\.proj\.weight', r'block1\.\d+\.attn\.learnable_tokens',
               r'block4\.\d+\.attn\.qkv\.weight', r'norm4\.weight')))
