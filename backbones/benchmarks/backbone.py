"""``backbone``: the backbones side by side, forward and forward+backward, ours vs timm.

Subjects are named as in the config files (``mask-rcnn_<name>_fpn_...``): every buildable
row of :mod:`backbones.metadata`, plus ``timm-mambaout-t`` (timm's ``mambaout_tiny``
features, the reference of ``mambaout-t``), ``timm-convnext-t`` and ``timm-swin-t``
(timm's ``convnext_tiny`` / ``swin_tiny_patch4_window7_224`` features, random init, Swin
with ``dynamic_img_size`` so any input runs). The default subjects are the rows whose
``benchmark`` column names ``backbone``, plus that timm comparison, and on CUDA also
ConvNeXt-T and Swin-T (the issue's table). On CUDA a backbone with a ``scan_backend`` is
built once per backend that can run there (``vmamba-t (torch)``, ...).

``--precision auto`` (default) runs under fp16 autocast on CUDA (as the AMP configs train)
and in fp32 on CPU (the committed records). Every row holds each model's time over
MambaOut-T's (where MambaOut-T runs), on CUDA also its peak memory
(``torch.cuda.max_memory_allocated`` above the start of the call); the issue's targets
(VMamba-T forward+backward <= 2x MambaOut-T, VMamba-V2-T <= 1.5x, per scan backend) are
evaluated at its input, 800x1344 batch 2, where measured.
"""
import argparse
import contextlib
import inspect
import re

import torch

from ..engine.checkpoint import load_state_dict_strict
from ..metadata import load_rows
from ..models import backbone_class
from ..ops import available_backends
from .common import (
    Benchmark,
    fmt_seconds,
    head,
    make_record,
    max_diff,
    mib,
    notes_md,
    peak_bytes,
    target,
    time_interleaved,
)

__all__ = ['BackboneSpeed', 'subjects', 'default_models', 'parse_shape']
OURS, TIMM = 'mambaout-t', 'timm-mambaout-t'
#: timm's CNN / attention baselines of the issue's table: name -> (timm model, extra kwargs).
TIMM_BASELINES = {
    'timm-convnext-t': ('convnext_tiny', {}),
    'timm-swin-t': ('swin_tiny_patch4_window7_224', {'dynamic_img_size': True}),
}
MODES = ('fwd', 'fwdbwd')
#: The issue's targets: fwd+bwd time over MambaOut-T's, at its input (batch, 3, H, W).
VS_MAMBAOUT_GOALS = {'vmamba-t': 2.0, 'vmamba-v2-t': 1.5}
ISSUE_INPUT = [2, 3, 800, 1344]


def short_name(row):
    """The name configs give the row's backbone: ``mask-rcnn_<name>_fpn_...``."""
    return (row.det_config or row.seg_config).split('_')[1]


def subjects():
    """``name -> metadata row`` of every backbone the suite builds and configures."""
    return {short_name(r): r for r in load_rows() if r.type and (r.det_config or r.seg_config)}


def default_models(device=None):
    """The rows marked ``backbone`` in the metadata, ``timm-mambaout-t`` after ``mambaout-t``;
    on a CUDA ``device`` also the timm baselines (ConvNeXt-T, Swin-T)."""
    names = []
    for row in load_rows():
        if 'backbone' in row.benchmark:
            names.append(short_name(row))
            if names[-1] == OURS:
                names.append(TIMM)
    if device is not None and device.type == 'cuda':
        names += list(TIMM_BASELINES)
    return names


class _TimmNCHW:
    """timm's features_only MambaOut-T returns NHWC maps; dense heads need NCHW (as ours
    returns), so the comparison includes that layout change."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        return tuple(y.permute(0, 3, 1, 2).contiguous() for y in self.model(x))


def _timm_mambaout(arch, **kwargs):
    import timm
    return timm.create_model(f'mambaout_{arch}', features_only=True, **kwargs)


def _timm_baseline(name):
    """A timm baseline's features model, and the callable returning NCHW maps."""
    import timm
    arch, kwargs = TIMM_BASELINES[name]
    m = timm.create_model(arch, features_only=True, pretrained=False, drop_path_rate=0.0,
                          **kwargs)
    nhwc = str(getattr(m, 'output_fmt', 'NCHW')).endswith('NHWC')
    return m, _TimmNCHW(m) if nhwc else m


def build_backbone(name, scan_backend=None):
    """``name`` -> (module, callable returning the NCHW feature maps)."""
    if name == TIMM:
        m = _timm_mambaout('tiny', drop_path_rate=0.0)
        return m, _TimmNCHW(m)
    if name in TIMM_BASELINES:
        return _timm_baseline(name)
    row = subjects()[name]
    cls = backbone_class(row.type)
    kwargs = {'scan_backend': scan_backend} if scan_backend else {}
    m = cls(row.arch, drop_path_rate=0.0, **kwargs)
    if row.type != 'MambaOut':
        return m, m
    # the weights of timm's model (same seed), so 'mambaout-t' and 'timm-mambaout-t' must
    # agree to fp32 precision
    torch.manual_seed(0)
    ref = _timm_mambaout(row.arch)
    sd = {re.sub(r'^stages_(\d+)\.', r'stages.\1.', k): v for k, v in ref.state_dict().items()}
    load_state_dict_strict(m, cls.convert_pretrained(sd), allow_missing=('out_norms.',))
    return m, m.forward_stages


def variants(name, device):
    """``(label, scan_backend)`` to build ``name`` as: one per scan backend on CUDA."""
    row = subjects().get(name)
    if device.type != 'cuda' or row is None or \
            'scan_backend' not in inspect.signature(backbone_class(row.type)).parameters:
        return [(name, None)]
    return [(f'{name} ({b})', b) for b in available_backends(device)]


def autocast(device, fp16):
    """fp16 autocast on ``device`` when ``fp16``, else nothing."""
    if not fp16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16)


def backbone_call(fn, model, x, mode, fp16=False):
    if mode == 'fwd':
        def call():
            model.eval()
            with torch.no_grad(), autocast(x.device, fp16):
                return fn(x)
        return call

    def call():
        model.train()
        model.zero_grad(set_to_none=True)
        with autocast(x.device, fp16):
            outs = fn(x)
            loss = sum(o.float().mean() for o in outs)
        loss.backward()
        return outs
    return call


def parse_shape(text):
    m = re.fullmatch(r'(\d+)x(\d+)x(\d+)', text)
    if not m:
        raise argparse.ArgumentTypeError(f'shape must be HxWxBATCH, got {text!r}')
    return tuple(int(v) for v in m.groups())


def over_mambaout(times):
    """``label -> its median time / MambaOut-T's`` (empty without MambaOut-T)."""
    if OURS not in times:
        return {}
    ref = times[OURS]['median_s']
    return {k: round(v['median_s'] / ref, 3) for k, v in times.items()}


def vmamba_targets(row, groups):
    """The issue's VMamba targets (fwd+bwd over MambaOut-T's) at its input, where measured."""
    ratios = row['fwdbwd'].get('over_mambaout_t') or {}
    if row['input'] != ISSUE_INPUT or not ratios:
        return []
    out = []
    for name, goal in VS_MAMBAOUT_GOALS.items():
        for label in groups.get(name, []):
            out.append(target(f'{label} 800x1344 b2 fwdbwd: / MambaOut-T', f'<= {goal}x',
                              ratios[label], ratios[label] <= goal))
    return out


def _max_rel(outs, refs):
    return max(max_diff(a, b)['max_rel'] for a, b in zip(outs, refs))


class BackboneSpeed(Benchmark):
    name = 'backbone'
    help = 'backbones: ours vs timm'

    def add_arguments(self, p):
        p.add_argument('--shapes', type=parse_shape, nargs='+',
                       default=[(800, 1280, 1), (512, 512, 2)], help='HxWxBATCH ...')
        choices = [*subjects(), TIMM, *TIMM_BASELINES]
        p.add_argument('--models', nargs='+', default=None, choices=choices,
                       metavar='NAME', help=f"default: {' '.join(default_models())} (on cuda "
                                            f"also {' '.join(TIMM_BASELINES)}); any of: "
                                            f"{', '.join(choices)}")
        p.add_argument('--repeats', type=int, default=3)
        p.add_argument('--channels-last', action='store_true')
        p.add_argument('--precision', choices=('auto', 'fp32', 'fp16'), default='auto',
                       help='fp16: under fp16 autocast; auto (default): fp16 on cuda, fp32 on cpu')

    def run(self, args, device):
        fp16 = args.precision == 'fp16' or (args.precision == 'auto' and device.type == 'cuda')
        built, groups = self._build(args.models or default_models(device), device)
        if args.channels_last:
            for model, _ in built.values():
                model.to(memory_format=torch.channels_last)
        results, targets = [], []
        for h, w, batch in args.shapes:
            x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
            row = {'input': [batch, 3, h, w]}
            if fp16:
                row['precision'] = 'fp16 autocast'
            row.update(self._equalities(built, groups, x))
            for mode in MODES:
                calls = {label: backbone_call(fn, m, x, mode, fp16)
                         for label, (m, fn) in built.items()}
                t = time_interleaved(calls, args.repeats, device)
                row[mode] = {'time': t}
                if {OURS, TIMM} <= set(built):
                    ratio = t[OURS]['median_s'] / t[TIMM]['median_s']
                    row[mode]['ours_over_timm'] = round(ratio, 3)
                    targets.append(target(f'MambaOut-T {h}x{w} b{batch} {mode}: ours / timm',
                                          '<= 1.0', round(ratio, 3), ratio <= 1.0))
                if OURS in t:
                    row[mode]['over_mambaout_t'] = over_mambaout(t)
                if device.type == 'cuda':
                    row[mode]['peak_mib'] = self._peaks(built, calls, device)
            targets += vmamba_targets(row, groups)
            results.append(row)
            print(row['input'], {m: {k: round(v['median_s'], 3)
                                     for k, v in row[m]['time'].items()} for m in MODES})
        notes = ['ours: MambaOut.forward_stages (NCHW, before the output norms); timm: '
                 'mambaout_tiny features_only, NHWC maps made NCHW-contiguous; same weights, '
                 'drop_path 0; fwd in eval mode under no_grad, fwdbwd in train mode with the '
                 'mean of every map as the loss.']
        if device.type == 'cuda':
            notes.append(f"{'fp16 autocast' if fp16 else 'fp32'}; fwdbwd = forward + backward "
                         'without an optimizer step; peak = max_memory_allocated above the '
                         'start of the call; timm convnext_tiny / swin_tiny (dynamic_img_size) '
                         'features, random init; targets at input 800x1344 batch 2 only')
        return make_record(self.name, args, device, results, targets, notes)

    @staticmethod
    def _peaks(built, calls, device):
        """``label -> MiB`` each call needs above what is live before it, with no model
        holding gradients then (so a model's own freed gradients are not netted out)."""
        out = {}
        for label, call in calls.items():
            for model, _ in built.values():
                model.zero_grad(set_to_none=True)
            out[label] = mib(peak_bytes(call, device))
        return out

    @staticmethod
    def _build(names, device):
        """``label -> (module, fn)`` on ``device`` and ``model name -> its labels``."""
        built, groups = {}, {}
        for name in names:
            for label, scan_backend in variants(name, device):
                torch.manual_seed(0)
                built[label] = build_backbone(name, scan_backend)
                built[label][0].to(device)
                groups.setdefault(name, []).append(label)
        return built, groups

    @staticmethod
    def _equalities(built, groups, x):
        """Ours vs timm's MambaOut-T, and each scan backend vs the first, on ``x``."""
        pairs = [(OURS, TIMM)] if {OURS, TIMM} <= set(built) else []
        scan_pairs = [(label, labels[0]) for labels in groups.values() for label in labels[1:]]
        if not pairs + scan_pairs:
            return {}
        out = {}
        with torch.no_grad():
            for m, _ in built.values():
                m.eval()
            if pairs:
                out['mambaout_equal_timm'] = _max_rel(built[OURS][1](x), built[TIMM][1](x))
            if scan_pairs:
                out['scan_backends_max_rel'] = {a: _max_rel(built[a][1](x), built[b][1](x))
                                                for a, b in scan_pairs}
        return out

    def render(self, name, rec):
        if any('over_mambaout_t' in r['fwdbwd'] for r in rec['results']):
            return render_side_by_side(rec)
        out = head(rec, 'Backbones (seconds per call)')
        models = list(rec['results'][0]['fwd']['time'])
        out += ['| input | pass | ' + ' | '.join(models) + ' | MambaOut-T ours / timm |',
                '|' + ' --- |' * (len(models) + 3)]
        for r in rec['results']:
            for m in MODES:
                t = r[m]['time']
                out.append(f"| {'x'.join(map(str, r['input']))} | {m} | "
                           + ' | '.join(fmt_seconds(t[k]['median_s']) for k in models)
                           + f" | {r[m].get('ours_over_timm', 'n/a')} |")
        return out + [''] + notes_md(rec)


def render_side_by_side(rec):
    """One line per (input, model): ms per call, x MambaOut-T, peak (records of CUDA runs)."""
    out = head(rec, f"Backbones side by side, {rec['device']}")
    out += ['| input | precision | model | fwd ms | fwd+bwd ms | fwd+bwd x MambaOut-T | '
            'peak fwd+bwd MiB |', '|' + ' --- |' * 7]
    for r in rec['results']:
        fb = r['fwdbwd']
        for label in fb['time']:
            ratio = fb['over_mambaout_t'].get(label)
            out.append('| ' + ' | '.join([
                'x'.join(map(str, r['input'])), r.get('precision', 'fp32'), f'`{label}`',
                f"{r['fwd']['time'][label]['median_s'] * 1e3:.1f}",
                f"{fb['time'][label]['median_s'] * 1e3:.1f}",
                'n/a' if ratio is None else f'{ratio:.2f}',
                str((fb.get('peak_mib') or {}).get(label, 'n/a'))]) + ' |')
    return out + [''] + notes_md(rec)
