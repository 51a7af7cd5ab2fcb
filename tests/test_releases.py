"""Released detectors / segmentors re-evaluated through the suite: the manifest
(results/releases.csv), the converters (backbones/releases), ``tools/reproduce.py release``
and the re-evaluated column of the leaderboard.

The synthetic release checkpoints are built from ``tests/data/release_layouts.json.gz``: the
key layout (names, shapes, dtypes) of each released file of the manifest, dumped once from a
random-weight model built by that release's own code (its ``about`` says how), not from the
converters under test. One row per layout is converted strictly and evaluated by
tools/test.py on the toy data; every row is converted strictly in the release checklist
(``pytest -m checklist``).
"""
import csv
import functools
import gzip
import hashlib
import http.server
import json
import os
import os.path as osp
import re
import socket
import threading

import pytest
import torch

from backbones.engine.checkpoint import CheckpointError
from backbones.metadata import RELEASE_METRICS, RELEASES_CSV, load_releases, load_rows
from backbones.releases import LAYOUTS, convert_release, detect_layouts, sha256_file
from backbones.releases.download import DownloadError, download, record_sha256
from backbones.releases.layouts import unfold_to_official
from conftest import REPO, load_tool

LAYOUT_FILE = osp.join(REPO, 'tests', 'data', 'release_layouts.json.gz')
PAPER = {'det': 'table2_coco_mask_rcnn_1x.csv', 'seg': 'table3_ade20k_upernet_160k.csv'}
# the smallest row of each layout: converted and evaluated on toy data in CI
EVALUATED = {'vmamba-mm': ('VMamba-T', 'det'), 'swin-mm': ('Swin-T', 'det'),
             'swin-official': ('Swin-S', 'seg'), 'focalnet-mm': ('FocalNet-T', 'det'),
             'pvtv2-official': ('PVTv2-B2', 'det'), 'convnext-official': ('ConvNeXt-T', 'seg'),
             'twins-official': ('Twins-S', 'seg'),
             'plainmamba-adapter': ('PlainMamba-L1', 'det'),
             'plainmamba-seg': ('PlainMamba-L2', 'seg'), 'cswin-seg': ('CSWin-T', 'seg'),
             'uniformer-seg': ('UniFormer-S', 'seg'), 'hornet-seg': ('HorNet-T', 'seg'),
             'internimage-seg': ('InternImage-T', 'seg'),
             'transnext-official': ('TransNeXt-Tiny', 'seg')}

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


@functools.lru_cache(maxsize=1)
def release_layouts():
    with gzip.open(LAYOUT_FILE, 'rt') as f:
        return json.load(f)['rows']


def _parse(entry):
    name, shape, *dtype = entry.split(' ')
    return name, tuple(int(s) for s in shape.split('x') if s), getattr(torch, (dtype or
                                                                              ['float32'])[0])


def synthetic_release(row, task, seed=0, fill=None):
    """A state dict in the exact layout of the release file of (row, task): seeded values,
    different in every tensor; BatchNorm statistics valid (variance > 0). ``fill``: a
    constant instead (cheap, for key / shape checks)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for entry in release_layouts()[f'{row}|{task}']['keys']:
        name, shape, dtype = _parse(entry)
        if fill is not None or not dtype.is_floating_point:
            sd[name] = torch.full(shape, fill or 0, dtype=dtype)
        elif name.endswith('running_var'):
            sd[name] = 1 + torch.rand(shape, generator=g)
        else:
            sd[name] = torch.randn(shape, generator=g) * 0.02
    return sd


def _release(row, task):
    return next(r for r in load_releases() if (r.row, r.task) == (row, task))


def _build(config):
    from backbones.engine.launch import build_model
    return build_model(config)[1]


# ---- the manifest ----------------------------------------------------------------------
def test_every_manifest_row_resolves():
    """The issue's 32 rows (15 det, 17 seg) and the 17 of the families that came later
    (CSWin, UniFormer, HorNet, InternImage: seg; TransNeXt: det and seg); each has an existing
    config (and MS config), a converter, a release whose layout the fixture confirms, and
    published metrics that are the paper's."""
    releases = load_releases()
    assert (len(releases), sum(r.task == 'det' for r in releases)) == (49, 18)
    names = {r.backbone: r for r in load_rows()}
    paper = {}
    for task, name in PAPER.items():
        with open(osp.join(REPO, 'results', 'paper', name), newline='') as f:
            paper.update({(task, rec['backbone']): rec for rec in csv.DictReader(f)})
    assert set(EVALUATED) == set(LAYOUTS) == {r.layout for r in releases}
    for rel in releases:
        what = f'{rel.row} ({rel.task})'
        assert osp.isfile(rel.config_path()), what
        assert not rel.ms_config or osp.isfile(rel.config_path(multi_scale=True)), what
        assert rel.layout in LAYOUTS, what
        assert rel.sha256 == '' or re.fullmatch(r'[0-9a-f]{64}', rel.sha256), what
        assert rel.manual == ('drive.google.com' in rel.url)
        # the row's own config, or a release/ config that inherits it and changes its protocol
        suite = names[rel.row].config(rel.task)
        assert rel.config == suite or (rel.config.startswith('release/') and f"_base_ = '../"
                                       f"{suite}'" in open(rel.config_path()).read()), what
        # MS: the row's config with --tta, or a release/ config inheriting it (TransNeXt's
        # release extrapolates its position bias for its MS numbers)
        assert rel.ms_config in ('', suite) or (
            rel.ms_config.startswith('release/') and f"_base_ = '../{suite}'" in
            open(rel.config_path(multi_scale=True)).read()), what
        published = paper[(rel.task, rel.row)]
        for metric, value in rel.metrics.items():
            assert metric in RELEASE_METRICS[rel.task]
            cell = published[metric]
            if cell:
                assert round(value, 1) == float(cell), (what, metric, value, cell)
            else:  # PlainMamba: its single-scale number, printed in the paper's MS column
                assert 'MS column' in rel.caveat and float(published['miou_ms']) == value, what
        # the fixture's release layout is recognised as exactly this row's layout
        backbone = [_parse(e)[0][9:] for e in release_layouts()[f'{rel.row}|{rel.task}']['keys']
                    if e.startswith('backbone.')]
        assert detect_layouts(backbone) == [rel.layout], what


def test_release_configs_change_only_the_protocol():
    from mmengine.config import Config

    def load(path):
        return Config.fromfile(path).to_dict()
    for s in ('t', 's', 'b'):
        slide = load(f'{REPO}/seg_configs/release/upernet_convnext-{s}_8xb2-amp-160k_ade20k-'
                     f'512x512_slide.py')
        suite = load(f'{REPO}/seg_configs/upernet_convnext-{s}_8xb2-amp-160k_ade20k-512x512.py')
        assert slide['model'].pop('test_cfg') == dict(mode='slide', crop_size=(512, 512),
                                                     stride=(341, 341))
        assert suite['model'].pop('test_cfg') == dict(mode='whole')
        assert slide == suite
    for s in ('l2', 'l3'):
        aligned = load(f'{REPO}/seg_configs/release/upernet_plainmamba-{s}_8xb2-amp-160k_'
                       f'ade20k-512x512_aligned.py')
        suite = load(f'{REPO}/seg_configs/upernet_plainmamba-{s}_8xb2-amp-160k_ade20k-512x512.py')
        pipe = aligned['test_dataloader']['dataset']['pipeline']
        assert [t['type'] for t in pipe] == ['LoadImageFromFile', 'Resize', 'ResizeToMultiple',
                                             'LoadAnnotations', 'PackSegInputs']
        assert pipe[2]['size_divisor'] == 32 and pipe[1]['scale'] == (2048, 512)
        for key in ('test_pipeline', 'val_dataloader', 'test_dataloader'):
            aligned.pop(key), suite.pop(key)
        assert aligned == suite


# ---- converters ------------------------------------------------------------------------
def test_swin_unfold_order_is_undone_exactly():
    """mmdet's own swin_converter (official -> mmdet) reorders the patch merging's 4C
    channels; unfold_to_official restores every row and column. Checked on tensors whose
    entries are all distinct."""
    from mmdet.models.backbones.swin import swin_converter
    official = {'layers.0.downsample.reduction.weight': torch.arange(8 * 24.).view(8, 24),
                'layers.0.downsample.norm.weight': torch.arange(24.),
                'layers.0.downsample.norm.bias': -torch.arange(24.)}
    mm = swin_converter(official)
    for key, value in official.items():
        moved = mm['backbone.' + key.replace('layers.', 'stages.', 1)]
        assert not torch.equal(moved, value)  # mmdet really permutes
        assert torch.equal(unfold_to_official(moved), value), key


def test_swin_mm_release_computes_what_mmdet_swin_computes():
    """A random mmdet SwinTransformer (the model-zoo files' own code), converted through the
    swin-mm layout into the suite's TimmBackbone, gives the same features. Non-square input,
    a multiple of the window grid (7 x 32): where a stage needs padding timm's Swin pads after
    the cyclic shift and Swin's dense code before it, so their outputs differ there whatever
    the weights (reported; not a matter of the converter)."""
    from mmdet.models.backbones import SwinTransformer

    from backbones.models.timm_backbone import TimmBackbone
    torch.manual_seed(0)
    mm = SwinTransformer(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                         window_size=7, out_indices=(0, 1, 2, 3))
    mm.eval()
    with torch.no_grad():
        for p in mm.parameters():
            p.normal_(0, 0.05)
    holder = torch.nn.Module()
    holder.backbone = TimmBackbone('swin_tiny_patch4_window7_224', out_norm_eps=1e-5)
    holder.eval()
    out, dropped = convert_release({'backbone.' + k: v for k, v in mm.state_dict().items()},
                                   holder, 'swin-mm')
    assert set(dropped) == {k for k in mm.state_dict() if k.endswith('relative_position_index')}
    holder.load_state_dict(out)
    x = torch.randn(1, 3, 224, 448)
    with torch.no_grad():
        for a, b in zip(mm(x), holder.backbone(x)):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_another_layout_or_size_is_refused_by_name():
    with torch.device('meta'):
        swin_t = _build(_release('Swin-T', 'det').config_path())
        vmamba_t = _build(_release('VMamba-T', 'det').config_path())
    vmamba_s_file = synthetic_release('VMamba-S', 'det', fill=0.)
    with pytest.raises(CheckpointError, match=r'not in the swin-mm layout.*vmamba-mm layout'):
        convert_release(vmamba_s_file, swin_t, 'swin-mm', source='vmamba-s.pth')
    with pytest.raises(CheckpointError, match=r'unexpected keys \(\d+\): backbone\.layers\.2\.'
                                              r'blocks\.10\.'):
        convert_release(vmamba_s_file, vmamba_t, 'vmamba-mm', source='vmamba-s.pth')
    imagenet = {k[9:]: v for k, v in vmamba_s_file.items() if k.startswith('backbone.')}
    with pytest.raises(CheckpointError, match='has no backbone.* keys'):
        convert_release(imagenet, vmamba_t, 'vmamba-mm', source='vssm_small.pth')
    # a key no weight takes is refused: one the suite converter drops (timm's full Swin has a
    # final norm the features model lacks), or one nothing knows
    swin_file = synthetic_release('Swin-T', 'det', fill=0.)
    swin_file['backbone.norm.weight'] = torch.zeros(768)
    with pytest.raises(CheckpointError, match=r'used by no weight of the model: norm\.weight'):
        convert_release(swin_file, swin_t, 'swin-mm', source='swin.pth')
    del swin_file['backbone.norm.weight']
    swin_file['backbone.extra.weight'] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r'unexpected keys \(1\): backbone\.extra\.weight'):
        convert_release(swin_file, swin_t, 'swin-mm', source='swin.pth')


@pytest.mark.checklist
@pytest.mark.parametrize('row,task', [(r.row, r.task) for r in load_releases()],
                         ids=lambda v: v)
def test_every_release_converts_strictly(row, task):
    """Every release file's layout fits its row's config exactly (keys, shapes); only the
    layout's declared keys (derived buffers, unused ImageNet layers) are left out."""
    rel = _release(row, task)
    with torch.device('meta'):
        model = _build(rel.config_path())
    sd = synthetic_release(row, task, fill=0.)
    out, dropped = convert_release(sd, model, rel.layout, source=f'{row} ({task})')
    assert set(out) >= set(k for k in model.state_dict() if 'num_batches_tracked' not in k)
    assert all(why for why in dropped.values())


# ---- tools/reproduce.py release, on toy data ---------------------------------------------
class _Server(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` with HTTP Range support; ``cut[path]``: bytes sent before the next
    answer for path breaks off (an interrupted transfer)."""
    files, cut, ranges = {}, {}, []

    def do_GET(self):
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        m = re.match(r'bytes=(\d+)-$', self.headers.get('Range', ''))
        self.ranges.append((self.path, self.headers.get('Range')))
        if m:
            start = int(m[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header('Content-Range', f'bytes */{len(data)}')
                self.end_headers()
                return
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        else:
            self.send_response(200)
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        body = data[start:]
        limit = self.cut.pop(self.path, None)
        self.wfile.write(body if limit is None else body[:limit])
        if limit is not None:
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Server.files, _Server.cut, _Server.ranges = {}, {}, []
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}', _Server
    httpd.shutdown()


def test_download_resumes_with_range_and_checks_length(tmp_path, server):
    url, srv = server
    data = os.urandom(300_000)
    srv.files['/f.pth'] = data
    dst = str(tmp_path / 'f.pth')
    srv.cut['/f.pth'] = 100_000
    with pytest.raises(DownloadError, match=r'100000 of 300000 bytes|interrupted'):
        download(url + '/f.pth', dst, progress=False)
    assert not osp.exists(dst) and osp.getsize(dst + '.part') == 100_000
    assert download(url + '/f.pth', dst, progress=False) == 300_000
    assert srv.ranges[-1] == ('/f.pth', 'bytes=100000-')  # continued, not restarted
    assert open(dst, 'rb').read() == data and not osp.exists(dst + '.part')
    with pytest.raises(DownloadError, match='HTTP 404'):
        download(url + '/missing.pth', str(tmp_path / 'm.pth'), progress=False)
    # the sha256 cell is filled once, atomically; a different file for the row is refused
    manifest = str(tmp_path / 'releases.csv')
    with open(RELEASES_CSV) as f:
        open(manifest, 'w').write(f.read())
    sha = hashlib.sha256(data).hexdigest()
    assert record_sha256(manifest, 'PVTv2-B2', 'det', sha)
    assert not record_sha256(manifest, 'PVTv2-B2', 'det', sha)
    with pytest.raises(ValueError, match='already has sha256'):
        record_sha256(manifest, 'PVTv2-B2', 'det', '0' * 64)
    assert [r.sha256 for r in load_releases(manifest) if r.row == 'PVTv2-B2'] == [sha]


def test_dry_run_lists_every_row_and_the_missing_files(tmp_path, capsys):
    reproduce = load_tool('reproduce')
    ckpt = tmp_path / 'ckpt'
    ckpt.mkdir()
    (ckpt / _release('Swin-S', 'seg').file).write_bytes(b'x')
    outcome = reproduce.run_release(reproduce.parse_args(
        ['release', '--dry-run', '--tta', '--ckpt-dir', str(ckpt),
         '--results', str(tmp_path / 'results')]))
    text = capsys.readouterr().out
    releases = load_releases()
    manual = sum(r.manual for r in releases)
    assert len(outcome) == len(releases) == 49 and manual == 8
    assert outcome['Swin-S (seg)'] == 'verify, convert, evaluate'
    assert sum(v.startswith('MISSING') for v in outcome.values()) == 48
    for rel in releases:
        assert rel.row in text
        if rel.manual:  # Google Drive: the message names the exact file to save
            assert f'save it as {ckpt / rel.file}' in outcome[f'{rel.row} ({rel.task})']
    assert f'1 files present, 48 missing ({48 - manual} plain HTTP: --download fetches them; ' \
           f'{manual} Google Drive only: by hand)' in text
    assert '78 evaluations' in text  # 49 single-scale + 29 seg rows with a multi-scale run


@pytest.fixture(scope='module')
def toy_release(tmp_path_factory, toy_data):
    """One synthetic release file per layout, a manifest of those rows (names without the
    model zoo's hash suffix; FocalNet-T served from a local HTTP server) and the toy data."""
    root = tmp_path_factory.mktemp('release')
    ckpt = root / 'ckpt'
    ckpt.mkdir()
    rows, files = [], {}
    with open(RELEASES_CSV, newline='') as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        chosen = {v for v in EVALUATED.values()}
        for rec in reader:
            if (rec['row'], rec['task']) not in chosen:
                continue
            rec['file'] = re.sub(r'-[0-9a-f]{8}\.pth$', '.pth', rec['file'])
            state = synthetic_release(rec['row'], rec['task'], seed=len(rows))
            blob = ckpt / rec['file']
            torch.save({'meta': {'CLASSES': 'synthetic'}, 'state_dict': state}, blob)
            files[(rec['row'], rec['task'])] = str(blob)
            rows.append(rec)
    manifest = root / 'releases.csv'
    with open(manifest, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator='\n')
        writer.writeheader()
        writer.writerows(rows)
    return dict(root=root, ckpt=ckpt, manifest=manifest, files=files,
                toy=osp.dirname(toy_data['coco']))


def _release_args(env, results, *extra):
    # two of the four toy images: the pipeline is the point, not the number
    return ['release', '--manifest', str(env['manifest']), '--ckpt-dir', str(env['ckpt']),
            '--toy', env['toy'], '--results', str(results),
            '--work-root', str(env['root'] / 'work'), *extra,
            '--cfg-options', 'test_dataloader.dataset.indices=2']


@pytest.mark.slow
def test_every_layout_converts_and_evaluates_on_toy_data(toy_release, server, capsys,
                                                         monkeypatch):
    """The release mode end to end, one row per layout, tools/test.py in this process: the
    file checked, converted strictly, evaluated, recorded with source=release and its
    sha256, the sha256 fixed in the manifest; a download broken off is reported, the other
    rows go on, and the next run (through tools/dist_test.sh) continues it with a Range
    request and redoes nothing else."""
    url, srv = server
    reproduce = load_tool('reproduce')
    env, results = toy_release, toy_release['root'] / 'results'
    served = env['files'][('FocalNet-T', 'det')]
    srv.files['/focalnet.pth'] = open(served, 'rb').read()
    srv.cut['/focalnet.pth'] = len(srv.files['/focalnet.pth']) // 3
    os.remove(served)
    text = open(env['manifest']).read()
    old_url = _release('FocalNet-T', 'det').url
    open(env['manifest'], 'w').write(text.replace(old_url, url + '/focalnet.pth'))

    with pytest.raises(SystemExit) as err:  # one row failed: exit status 1, after the others
        reproduce.main(_release_args(env, results, '--gpus', '0', '--download'))
    assert err.value.code == 1
    out = capsys.readouterr().out
    assert re.search(r'FocalNet-T \(det\): SKIPPED: download failed: .*run again to continue',
                     out), out[-3000:]
    records = {}
    for rel in load_releases(str(env['manifest'])):
        folder = results / 'runs' / f'release-{osp.splitext(osp.basename(rel.config))[0]}'
        if rel.row == 'FocalNet-T':
            assert not folder.exists()
            continue
        rec = json.load(open(folder / 'metrics.json'))
        sha = sha256_file(env['files'][(rel.row, rel.task)])
        assert rec['source'] == 'release' and rec['toy'] is True
        assert rec['release']['sha256'] == sha == rel.sha256, rel.row  # recorded in the manifest
        assert rec['release']['layout'] == rel.layout and rec['release']['row'] == rel.row
        assert rec['checkpoint_sha256'] == sha256_file(rec['release']['converted'])
        records[rel.row] = os.path.getmtime(folder / 'metrics.json')
    assert len(records) == len(EVALUATED) - 1

    # the second run takes the GPU path: tools/dist_test.sh (here one CPU process, gloo)
    monkeypatch.setenv('PORT', str(_free_port()))
    reproduce.main(_release_args(env, results, '--gpus', '1', '--download'))
    out = capsys.readouterr().out
    assert srv.ranges[-1][1] is not None and srv.ranges[-1][1].startswith('bytes=')
    assert out.count('done before') == len(EVALUATED) - 1
    assert 'FocalNet-T (det): evaluating mask-rcnn_focalnet-t-lrf_fpn_8xb2-amp-1x_coco.py on ' \
           '1 GPU(s)' in out
    for rel in load_releases(str(env['manifest'])):
        folder = results / 'runs' / f'release-{osp.splitext(osp.basename(rel.config))[0]}'
        if rel.row != 'FocalNet-T':
            assert os.path.getmtime(folder / 'metrics.json') == records[rel.row]
    focal = json.load(open(results / 'runs' /
                           'release-mask-rcnn_focalnet-t-lrf_fpn_8xb2-amp-1x_coco' /
                           'metrics.json'))
    assert focal['release']['sha256'] == hashlib.sha256(srv.files['/focalnet.pth']).hexdigest()
    assert focal['world_size'] == 1 and focal['source'] == 'release'
    # toy-data release runs check the pipeline only: they never reach the table columns
    with open(results / 'leaderboard.csv', newline='') as f:
        assert all(not r['release_run'] for r in csv.DictReader(f))


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# ---- the leaderboard ---------------------------------------------------------------------
def _record(root, name, config, task, metrics, release_row, tta=False, toy=False):
    """A schema-valid release record, as reproduce.py release leaves it."""
    from mmengine.config import Config
    folder = root / name
    folder.mkdir(parents=True)
    cfg = Config.fromfile(config)
    backbone = cfg.model.backbone
    model = dict(backbone=dict(type=backbone.type, arch=backbone.get('arch'),
                               model_name=backbone.get('model_name')))
    if tta:
        model = dict(type='SegTTAModel', module=model)
    text = f'default_scope = {cfg.default_scope!r}\nmodel = {model!r}\n'
    (folder / 'config.py').write_text(text)
    rec = dict(record_version=2, source='release', task=cfg.default_scope, metrics=metrics,
               flags=[], config=osp.relpath(config, REPO),
               config_digest=hashlib.sha256(text.encode()).hexdigest(),
               checkpoint='converted.pth', checkpoint_sha256='a' * 64, tta=tta, toy=toy,
               world_size=8, date='2026-12-01T00:00:00+00:00', schedule='',
               backbone=model.get('module', model)['backbone'],
               release=dict(row=release_row, sha256='b' * 64))
    (folder / 'metrics.json').write_text(json.dumps(rec))


def test_leaderboard_tables_and_plot_carry_the_reevaluated_value(tmp_path):
    from backbones.results.leaderboard import write_leaderboard
    runs = tmp_path / 'runs'
    swin = _release('Swin-T', 'det')
    _record(runs, 'release-swin-t', swin.config_path(), 'det',
            {'coco/bbox_mAP': 0.426, 'coco/bbox_mAP_50': 0.652, 'coco/bbox_mAP_75': 0.468,
             'coco/segm_mAP': 0.394, 'coco/segm_mAP_50': 0.622, 'coco/segm_mAP_75': 0.422},
            'Swin-T')
    convnext = _release('ConvNeXt-T', 'seg')
    _record(runs, 'release-convnext-t', convnext.config_path(), 'seg', {'mIoU': 46.12},
            'ConvNeXt-T')
    _record(runs, 'release-convnext-t-tta', convnext.config_path(True), 'seg', {'mIoU': 46.6},
            'ConvNeXt-T', tta=True)
    plain = _release('PlainMamba-L2', 'seg')
    _record(runs, 'release-plainmamba-l2', plain.config_path(), 'seg', {'mIoU': 46.5},
            'PlainMamba-L2')
    _record(runs, 'release-toy', plain.config_path(), 'seg', {'mIoU': 12.0}, 'PlainMamba-L3',
            toy=True)
    _, rows = write_leaderboard(str(runs), str(tmp_path / 'none.csv'), str(tmp_path),
                                log=lambda *_: None)
    by = {(r['task'], r['backbone']): r for r in rows}
    swin_row = by[('det', 'Swin-T')]
    assert (swin_row['ap_box_release'], swin_row['ap_box_release_diff']) == (42.6, '-0.1')
    assert (swin_row['ap_mask_release'], swin_row['ap_mask_release_diff']) == (39.4, '+0.1')
    assert swin_row['ap_box'] == '' and swin_row['source'] == 'published'  # not retrained
    conv = by[('seg', 'ConvNeXt-T')]
    assert (conv['miou_ss_release'], conv['miou_ss_release_diff']) == (46.12, '+0.1')
    assert (conv['miou_ms_release'], conv['miou_ms_release_diff']) == (46.6, '-0.1')
    assert conv['release_run'] == 'release-convnext-t;release-convnext-t-tta'
    # PlainMamba's SS cell is empty in the paper: compared with the number its release gives
    pm = by[('seg', 'PlainMamba-L2')]
    assert (pm['miou_ss_paper'], pm['miou_ss_release'], pm['miou_ss_release_diff']) == \
        ('', 46.5, '-0.3')
    assert by[('seg', 'PlainMamba-L3')]['miou_ss_release'] == ''  # the toy run stays out
    table2 = open(tmp_path / 'table2.md').read()
    assert '[re-evaluated, re-evaluated - published]' in table2
    assert re.search(r'\| Swin-T .*\| 42\.7 \[42\.6, -0\.1\] \|', table2)
    table3 = open(tmp_path / 'table3.md').read()
    assert re.search(r'\| ConvNeXt-T .*\| 46\.0 \[46\.12, \+0\.1\] \| 46\.7 \[46\.6, -0\.1\] \|',
                     table3)
    with open(tmp_path / 'leaderboard.csv', newline='') as f:
        header = next(csv.reader(f))
    assert {'ap_box_release', 'ap_box_release_diff', 'miou_ms_release', 'release_run'} <= \
        set(header)
    assert open(tmp_path / 'ap_vs_macs.png', 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
