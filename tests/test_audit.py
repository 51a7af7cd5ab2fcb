"""The audit of issue 23: bad and unusual inputs a real user makes, none among the 54 cases
of tests/test_preflight.py, each through the command line a user types. A bad input is
refused before anything is written, with a message that names it; a valid-but-unusual one
is not refused (the train / test tools reach the Runner).

    pytest tests/test_audit.py                 # in process, the Runner replaced at its start
    python tests/test_audit.py --table FILE    # every case as a real subprocess (valid ones
                                               # train or test for real), timed: the README
                                               # table of the Reliability section

Every input is built here from the session's toy data (tests/conftest.py): COCO / ADE20K
copies with one thing changed, run records, configs, checkpoints.
"""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
from conftest import REPO, TOOLS, load_tool, toy_options  # noqa: E402

DET = osp.join(REPO, 'det_configs', 'mask-rcnn_mambaout-femto_fpn_8xb2-amp-1x_coco.py')
SEG = osp.join(REPO, 'seg_configs', 'upernet_mambaout-femto_8xb2-amp-160k_ade20k-512x512.py')
TD, VD = 'train_dataloader.dataset', 'val_dataloader.dataset'
#: appended to the valid cases when they run for real (a subprocess): one short epoch / a
#: few iterations on the image the case is about
SHORT = {DET: ['train_cfg.max_epochs=1', f'{VD}.indices=[0]'],
         SEG: ['train_cfg.max_iters=2', 'train_cfg.val_interval=2', f'{VD}.indices=[0]']}


def tagged_jpeg(path, array, orientation, **extra):
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, exif=exif.tobytes(), quality=95, **extra)


def _read_rgb(path):
    from PIL import Image
    with Image.open(path) as img:
        return np.array(img.convert('RGB'))


class Inputs:
    """The broken (or unusual) inputs, written once into ``root``."""

    def __init__(self, root, toy):
        self.root, self.toy = str(root), toy
        self._opts = {}
        ann = osp.join(toy['coco'], 'annotations', 'instances_train2017.json')
        with open(ann) as f:
            self.coco = json.load(f)

    def path(self, *names):
        return osp.join(self.root, *names)

    def copy(self, name, kind):
        dst = self.path(name)
        if not osp.exists(dst):
            shutil.copytree(self.toy[kind], dst)
        return dst

    def text(self, name, text):
        with open(self.path(name), 'w') as f:
            f.write(text)
        return self.path(name)

    def opts(self, config):
        if config not in self._opts:
            kind = 'ade' if config == SEG else 'coco'
            self._opts[config] = toy_options(config, self.toy[kind], scale=64) + [
                'model.backbone.init_cfg=None']
        return list(self._opts[config])

    # ---- COCO ---------------------------------------------------------------------------
    def coco_json(self, root, **changes):
        path = osp.join(root, 'annotations', 'instances_train2017.json')
        with open(path, 'w') as f:
            json.dump(dict(self.coco, **changes), f)

    def coco_tagged(self, name, stored_turned):
        """Image 1 tagged with orientation 6; its pixels turned to match the tag (a phone
        photo: valid) or left as they were (the annotations then describe the stored
        pixels, which mmcv turns: cannot align)."""
        root = self.copy(name, 'coco')
        path = osp.join(root, 'train2017', self.coco['images'][0]['file_name'])
        picture = _read_rgb(path)
        stored = np.ascontiguousarray(np.rot90(picture)) if stored_turned else picture
        tagged_jpeg(path, stored, 6)
        return root

    def coco_with_image(self, name, index, save):
        """A COCO copy whose image ``index`` is replaced by ``save(path, picture)``."""
        root = self.copy(name, 'coco')
        path = osp.join(root, 'train2017', self.coco['images'][index]['file_name'])
        save(path, _read_rgb(path))
        return root

    # ---- ADE20K ------------------------------------------------------------------------
    def ade_file(self, root, kind='images', index=0):
        folder = osp.join(root, kind, 'training')
        return osp.join(folder, sorted(os.listdir(folder))[index])

    def ade_tagged(self, name, stored_turned):
        root = self.copy(name, 'ade')
        path = self.ade_file(root)
        picture = _read_rgb(path)
        tagged_jpeg(path, np.ascontiguousarray(np.rot90(picture)) if stored_turned
                    else picture, 6)
        return root


def _write_palette_labels(root):
    from PIL import Image
    for split in ('training', 'validation'):
        folder = osp.join(root, 'annotations', split)
        for name in os.listdir(folder):
            img = Image.open(osp.join(folder, name)).convert('P')
            img.putpalette([c for i in range(256) for c in (i * 37 % 256, i * 91 % 256, i)])
            img.save(osp.join(folder, name))


def _motion_photo(path, picture):
    from PIL import Image
    Image.fromarray(picture).save(path, quality=95)
    with open(path, 'ab') as f:  # what a phone's motion photo appends after the JPEG
        f.write(b'\x00\x00\x00\x18ftypmp42' + bytes(range(256)) * 8)


def _grey_and_cmyk(root, coco):
    from PIL import Image
    for index, mode in ((0, 'L'), (1, 'CMYK')):
        path = osp.join(root, 'train2017', coco['images'][index]['file_name'])
        Image.open(path).convert(mode).save(path, quality=95)
    return root


def _big_image(inputs):
    """Image 1 replaced by a 13,400 x 13,400 PNG (180 M pixels, over Pillow's limit)."""
    from PIL import Image
    root = inputs.copy('coco_big', 'coco')
    images = [dict(i) for i in inputs.coco['images']]
    old = osp.join(root, 'train2017', images[0]['file_name'])
    os.remove(old)
    images[0].update(file_name='big.png', width=13400, height=13400)
    Image.new('L', (13400, 13400), 120).save(osp.join(root, 'train2017', 'big.png'))
    inputs.coco_json(root, images=images)
    return root


def _records(inputs):
    """Run folders (one bad record each) for the collector cases, and a good base."""
    from mmengine.config import Config

    from backbones.results.runs import write_run_record
    base = inputs.path('records', 'good')
    ckpt = inputs.path('records', 'weights.pth')
    os.makedirs(osp.dirname(ckpt), exist_ok=True)
    with open(ckpt, 'wb') as f:
        f.write(b'weights')
    config = osp.join(REPO, 'det_configs', 'mask-rcnn_mambaout-t_fpn_8xb2-amp-1x_coco.py')
    write_run_record(base, Config.fromfile(config), {
        'coco/bbox_mAP': 0.452, 'coco/bbox_mAP_50': 0.674, 'coco/bbox_mAP_75': 0.497,
        'coco/segm_mAP': 0.409, 'coco/segm_mAP_50': 0.641, 'coco/segm_mAP_75': 0.440},
        config=config, checkpoint=ckpt, tta=False, world_size=8, env={})
    seg = inputs.path('records', 'good-seg')
    config = osp.join(REPO, 'seg_configs', 'upernet_mambaout-t_8xb2-amp-160k_ade20k-512x512.py')
    write_run_record(seg, Config.fromfile(config), {'aAcc': 82.3, 'mIoU': 47.6, 'mAcc': 58.9},
                     config=config, checkpoint=ckpt, tta=False, world_size=8, env={})

    def bad(name, origin=base, edit_config=False, **changes):
        runs = inputs.path('records', name)
        folder = osp.join(runs, 'run')
        shutil.copytree(origin, folder)
        rec = json.load(open(osp.join(folder, 'metrics.json')))
        for key, value in changes.items():
            if key == 'metrics':
                rec['metrics'].update(value)
            elif value is None:
                rec.pop(key)
            else:
                rec[key] = value
        json.dump(rec, open(osp.join(folder, 'metrics.json'), 'w'))
        if edit_config:
            with open(osp.join(folder, 'config.py'), 'a') as f:
                f.write("\noptim_wrapper = dict(optimizer=dict(lr=0.0002))\n")
        return runs
    return dict(
        percent=bad('percent', metrics={'coco/bbox_mAP': 45.1, 'coco/bbox_mAP_50': 67.4}),
        fraction=bad('fraction', origin=seg, metrics={'aAcc': 0.823, 'mIoU': 0.476,
                                                      'mAcc': 0.589}),
        string_bool=bad('string_bool', tta='false'),
        no_provenance=bad('no_provenance', record_version=None, config_digest=None,
                          checkpoint_sha256=None, source=None),
        edited=bad('edited', edit_config=True),
        task=bad('task', task='mmseg', metrics={'mIoU': 45.2}),
        on_train=bad('on_train', allowed_checks=['eval-on-train']))


def _legacy_checkpoint(inputs):
    """The toy femto detector's weights in torch's pre-1.6 (non-zip) format."""
    import torch
    from mmengine.config import DictAction

    from backbones.engine.launch import build_model
    opts = {}
    for item in inputs.opts(DET):
        key, value = item.split('=', 1)
        opts[key] = DictAction._parse_iterable(value)
    state = build_model(DET, opts)[1].state_dict()
    path = inputs.path('legacy_epoch_1.pth')
    torch.save({'state_dict': state, 'meta': {'epoch': 1}}, path,
               _use_new_zipfile_serialization=False)
    return path


def _holder(work_dir, kill=False):
    """A process holding ``work_dir``'s lock (killed with SIGKILL, if ``kill``)."""
    code = ('import importlib.util, sys, time\n'
            'spec = importlib.util.spec_from_file_location("lock", sys.argv[2])\n'
            'lock = importlib.util.module_from_spec(spec); spec.loader.exec_module(lock)\n'
            'lock.WorkDirLock(sys.argv[1], "tools/train.py").acquire()\n'
            'print("HELD", flush=True); time.sleep(3600)\n')
    proc = subprocess.Popen([sys.executable, '-c', code, work_dir,
                             osp.join(REPO, 'backbones', 'engine', 'lock.py')],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'HELD'
    if kill:
        proc.kill()
        proc.wait()
    return proc


# ---------------------------------------------------------------------------------------
# the cases: name -> dict(tool, config, argv (before --cfg-options), options, expect,
# valid, cls); argv / options may hold {work} (the case's work dir), {x}: inputs below
# ---------------------------------------------------------------------------------------
def build_cases(inputs):
    """Every case, its inputs written into ``inputs.root``."""
    coco = inputs.toy['coco']
    i = inputs
    records = _records(i)
    tagged = i.coco_tagged('coco_tagged', stored_turned=False)
    ann_copy = i.path('val_annotations_copy.json')
    shutil.copy(osp.join(coco, 'annotations', 'instances_val2017.json'), ann_copy)
    outside = i.copy('coco_box_outside', 'coco')
    anns = [dict(a) for a in i.coco['annotations']]
    first = next(k for k, a in enumerate(anns) if a['image_id'] == i.coco['images'][1]['id'])
    anns[first]['bbox'] = [900.0, 30.0, 12.0, 20.0]
    i.coco_json(outside, annotations=anns)
    box_only = i.copy('coco_box_only', 'coco')
    i.coco_json(box_only, annotations=[{k: v for k, v in a.items() if k != 'segmentation'}
                                       for a in i.coco['annotations']])
    wide_labels = i.copy('ade_16bit', 'ade')
    from PIL import Image
    label = i.ade_file(wide_labels, 'annotations', 2)
    Image.fromarray(np.array(Image.open(label)).astype(np.uint16) + 257).save(label)
    palette = i.copy('ade_palette', 'ade')
    _write_palette_labels(palette)
    os.makedirs(i.path('configs'), exist_ok=True)
    i.text('configs/syntax.py', f"_base_ = '{DET}'\nmodel = dict(\n    backbone=dict(arch="
                                "'femto')\ntrain_cfg = dict(max_epochs=1)\n")
    i.text('configs/child.py', "_base_ = './syntax.py'\n")
    i.text('configs/undefined.py', f"_base_ = '{DET}'\nlr = 1e-4\n"
                                   "optim_wrapper = dict(optimizer=dict(lr=lr * scale))\n")
    i.text('configs/no_base.py', "_base_ = './mask-rcnn_base_that_moved.py'\n")
    i.text('configs/legacy.py', f"_base_ = '{DET}'\nlr_config = dict(policy='step', "
                                "step=[8, 11])\n")
    i.text('configs/near_miss.py', f"_base_ = '{DET}'\nparam_schedulers = [dict(type="
                                   "'LinearLR', start_factor=0.1, by_epoch=False, begin=0, "
                                   "end=10)]\n")
    i.text('a_file', 'not a folder')
    os.makedirs(i.path('checkpoint_folder'), exist_ok=True)
    i.text('empty.pth', '')
    legacy = _legacy_checkpoint(i)
    os.makedirs(i.path('held'), exist_ok=True)
    os.makedirs(i.path('stale'), exist_ok=True)

    def train(config, options=(), argv=(), expect='', valid=False, cls='', short=True):
        return dict(tool='train', config=config, argv=list(argv), options=list(options),
                    expect=expect, valid=valid, cls=cls, short=short)

    def collect(runs, expect):
        return dict(tool='leaderboard', argv=['--runs', runs, '--out', '{work}', '--strict'],
                    expect=expect, valid=False, cls='records')

    paper = ['coco/bbox_mAP=45.1', 'coco/bbox_mAP_50=67.3', 'coco/bbox_mAP_75=49.6',
             'coco/segm_mAP=41.0', 'coco/segm_mAP_50=64.1', 'coco/segm_mAP_75=44.1']
    imported = [osp.join(REPO, 'det_configs', 'mask-rcnn_mambaout-t_fpn_8xb2-amp-1x_coco.py'),
                '--out', '{work}', '--origin', 'MambaOut paper, Table 2',
                '--checkpoint-sha256', 'ab' * 32, '--metric', *paper]
    return {
        # 1. the leaderboard trusts nothing it did not check
        'record: AP written in percent': collect(records['percent'], 'AP in percent'),
        'record: mIoU written as a fraction': collect(records['fraction'],
                                                      'fractions of 1, but mmseg writes'),
        'record: "false" string for a boolean': collect(records['string_bool'],
                                                        "tta is 'false', expected true or"),
        'record: no provenance (written by hand)': collect(records['no_provenance'],
                                                           'record_version is None'),
        'record: config.py edited after the run': collect(records['edited'],
                                                          'config.py does not match the'),
        'record: task not its config\'s': collect(records['task'],
                                                  "but config.py is an 'mmdet' config"),
        'record: evaluated on the training split': collect(records['on_train'],
                                                           'evaluated with --allow eval-on'),
        'import: AP as printed in the paper, units not said': dict(
            tool='import_run', argv=imported, expect='AP in percent, but mmdet writes',
            valid=False, cls='records'),
        'import: AP as printed, with --units paper': dict(
            tool='import_run', argv=imported + ['--units', 'paper'], expect='', valid=True,
            cls='records'),
        # 2. pixels and labels stay aligned
        'COCO image tagged rotated, boxes drawn on its stored pixels': train(
            DET, [f'{TD}.data_root={tagged}/'], expect='carry an EXIF orientation tag that',
            cls='pixels'),
        'COCO image stored rotated, tagged to display upright': train(
            DET, [f'{TD}.data_root=' + i.coco_tagged('coco_upright', True) + '/',
                  f'{TD}.indices=[0]'], valid=True, cls='pixels'),
        'COCO tagged image, loader told to ignore orientation': train(
            DET, [f'{TD}.data_root={tagged}/', f'{TD}.indices=[0]',
                  f'{TD}.pipeline.0.color_type=color_ignore_orientation'],
            valid=True, cls='pixels'),
        'ADE20K image tagged rotated, labels drawn on its stored pixels': train(
            SEG, [f'{TD}.data_root=' + i.ade_tagged('ade_tagged', False) + '/'],
            expect="label maps fit their image's stored pixels", cls='pixels'),
        'ADE20K image stored rotated, tagged to display upright': train(
            SEG, [f'{TD}.data_root=' + i.ade_tagged('ade_upright', True) + '/',
                  f'{TD}.indices=[0]'], valid=True, cls='pixels'),
        'ADE20K palette (mode P) label maps': train(
            SEG, [f'{TD}.data_root={palette}/', f'{VD}.data_root={palette}/'], valid=True,
            cls='no false alarm'),
        'ADE20K 16-bit label map above 255': train(
            SEG, [f'{TD}.data_root={wide_labels}/'], expect='values outside 0..255',
            cls='pixels'),
        'JPEG with data after its end marker (motion photo)': train(
            DET, [f'{TD}.data_root=' + i.coco_with_image('coco_motion', 0, _motion_photo) + '/',
                  f'{TD}.indices=[0]'], valid=True, cls='no false alarm'),
        'image over Pillow\'s pixel limit (180 M pixels)': train(
            DET, [f'{TD}.data_root=' + _big_image(i) + '/', f'{TD}.indices=[0]'], valid=True,
            cls='no false alarm'),
        'greyscale and CMYK JPEGs': train(
            DET, [f'{TD}.data_root=' + _grey_and_cmyk(i.copy('coco_modes', 'coco'), i.coco)
                  + '/', f'{TD}.indices=[0,1]'], valid=True, cls='no false alarm'),
        'a box outside its image let through by --allow bad-boxes': train(
            DET, [f'{TD}.data_root={outside}/', f'{TD}.indices=[1]'],
            argv=['--allow', 'bad-boxes'], valid=True, cls='no false alarm'),
        'validation reads the training split': train(
            DET, [f'{VD}.ann_file=annotations/instances_train2017.json',
                  f'{VD}.data_prefix.img=train2017/',
                  f'val_evaluator.ann_file={coco}/annotations/instances_train2017.json'],
            expect='val_dataloader reads the training data', cls='pixels'),
        'train and val label conventions differ': train(
            SEG, [f'{VD}.reduce_zero_label=False'], expect='read labels with different '
                                                         'conventions', cls='pixels'),
        'Mask R-CNN on box-only annotations': train(
            DET, [f'{TD}.data_root={box_only}/'], expect='have no segmentation', cls='pixels'),
        'metric scores a byte-identical copy of the annotations': train(
            DET, [f'val_evaluator.ann_file={ann_copy}'], valid=True, cls='no false alarm'),
        # 3. one run per work dir
        'second run in a work dir another run holds': train(
            DET, argv=['--work-dir-held'], expect='is in use by another run: pid',
            cls='lock'),
        'work dir of a run killed with SIGKILL (stale lock)': train(
            DET, argv=['--work-dir-stale'], valid=True, cls='lock'),
        # 4. messages that name the problem
        'config that does not parse': train(i.path('configs/syntax.py'),
                                            expect='syntax.py:2: the config does not parse'),
        'syntax error in a _base_ file': train(i.path('configs/child.py'),
                                               expect='syntax.py:2: the config does not parse'),
        'config using an undefined name': train(
            i.path('configs/undefined.py'), expect="undefined.py:3: the config cannot be "
                                                   "loaded: NameError: name 'scale'"),
        'config whose _base_ moved': train(i.path('configs/no_base.py'),
                                           expect='mask-rcnn_base_that_moved.py does not exist'),
        '--cfg-options: a number with a typo': train(
            DET, ['optim_wrapper.optimizer.lr=1e-4x'], expect="the config has a number there"),
        '--cfg-options: yes for a boolean': train(
            DET, ['train_dataloader.persistent_workers=yes'],
            expect='booleans are written True / False'),
        '--cfg-options: a config variable (pretrained=...)': train(
            DET, ['pretrained=checkpoints/other.pth'],
            expect='is a variable of the config file'),
        '--cfg-options: list index that does not exist': train(
            DET, [f'{TD}.pipeline.9.prob=0.5'], expect='is not one of its indices (0..4)'),
        '--cfg-options: item without "="': train(
            DET, ['train_cfg.max_epochs'], expect='expected KEY=VALUE'),
        '--allow: a check that does not exist': train(
            DET, argv=['--allow', 'everything'], expect="invalid choice: 'everything'"),
        '--work-dir is a file': train(DET, argv=['--work-dir', i.path('a_file')],
                                      expect='is a file, not a folder'),
        '--work-dir where nothing may be written': train(
            DET, argv=['--work-dir', '/sys/runs/x'], expect='cannot be written'),
        '--work-dir name too long for the file system': train(
            DET, argv=['--work-dir', i.path('w' * 300)], expect='bytes long, the file '
                                                             'system takes'),
        'resume from a folder': train(DET, argv=['--resume', i.path('checkpoint_folder')],
                                      expect='is a folder, not a checkpoint file'),
        'test an empty checkpoint file': dict(
            tool='test', config=DET, argv=[i.path('empty.pth')], options=[],
            expect='is empty (0 bytes)', valid=False, cls='messages'),
        'test a checkpoint in torch\'s legacy format': dict(
            tool='test', config=DET, argv=[legacy], options=[], expect='', valid=True,
            cls='no false alarm'),
        'typo in model.test_cfg.rcnn': train(
            DET, ['model.test_cfg.rcnn.max_per_imgg=50'],
            expect='max_per_imgg is not read by TwoStageDetector (did you mean max_per_img?)'),
        'typo in model.train_cfg.rpn_proposal': train(
            DET, ['model.train_cfg.rpn_proposal.nms_pree=1000'],
            expect='nms_pree is not read by TwoStageDetector (did you mean nms_pre?)'),
        'typo in a segmentor\'s model.test_cfg': train(
            SEG, ['model.test_cfg.mod=slide'], expect='(did you mean mode?)'),
        'typo in env_cfg': train(DET, ['env_cfg.cudnn_benchmarks=True'],
                                 expect='(did you mean cudnn_benchmark?)'),
        'typo in randomness': train(DET, ['randomness.seeds=0'],
                                    expect='(did you mean seed?)'),
        'mmdet 2.x key in a config (lr_config)': train(
            i.path('configs/legacy.py'), expect='lr_config: an mmdet 2.x / mmseg 0.x key'),
        'top-level key one letter off (param_schedulers)': train(
            i.path('configs/near_miss.py'), expect='(did you mean param_scheduler?)'),
    }


CLASSES = {'records': 1, 'pixels': 2, 'lock': 3, 'messages': 4, 'no false alarm': 5}


def case_argv(case, inputs, work):
    """``(tool name, argv)`` of a case, as a user types it."""
    argv = [a.replace('{work}', work) for a in case['argv']]
    if case['tool'] in ('leaderboard', 'import_run'):
        return case['tool'], argv
    if '--work-dir-held' in argv or '--work-dir-stale' in argv:
        work = inputs.path('held' if '--work-dir-held' in argv else 'stale')
        argv = []
    config = case['config']
    own_work = '--work-dir' in argv
    options = inputs.opts(config if osp.dirname(config) != inputs.path('configs') else DET)
    options += case['options']
    if case['tool'] == 'test':  # CHECKPOINT [flags]
        return 'test', [config, argv[0], '--work-dir', work, *argv[1:], '--cfg-options',
                        *options]
    return 'train', [config, *([] if own_work else ['--work-dir', work]), *argv,
                     '--cfg-options', *options]


@pytest.fixture(scope='module')
def audit(toy_data, tmp_path_factory):
    inputs = Inputs(tmp_path_factory.mktemp('audit'), toy_data)
    cases = build_cases(inputs)
    holder = _holder(inputs.path('held'))
    _holder(inputs.path('stale'), kill=True)
    yield inputs, cases
    holder.kill()
    holder.wait()


CASE_NAMES = [
    'record: AP written in percent', 'record: mIoU written as a fraction',
    'record: "false" string for a boolean', 'record: no provenance (written by hand)',
    'record: config.py edited after the run', 'record: task not its config\'s',
    'record: evaluated on the training split',
    'import: AP as printed in the paper, units not said',
    'import: AP as printed, with --units paper',
    'COCO image tagged rotated, boxes drawn on its stored pixels',
    'COCO image stored rotated, tagged to display upright',
    'COCO tagged image, loader told to ignore orientation',
    'ADE20K image tagged rotated, labels drawn on its stored pixels',
    'ADE20K image stored rotated, tagged to display upright',
    'ADE20K palette (mode P) label maps', 'ADE20K 16-bit label map above 255',
    'JPEG with data after its end marker (motion photo)',
    'image over Pillow\'s pixel limit (180 M pixels)', 'greyscale and CMYK JPEGs',
    'a box outside its image let through by --allow bad-boxes',
    'validation reads the training split', 'train and val label conventions differ',
    'Mask R-CNN on box-only annotations',
    'metric scores a byte-identical copy of the annotations',
    'second run in a work dir another run holds',
    'work dir of a run killed with SIGKILL (stale lock)',
    'config that does not parse', 'syntax error in a _base_ file',
    'config using an undefined name', 'config whose _base_ moved',
    '--cfg-options: a number with a typo', '--cfg-options: yes for a boolean',
    '--cfg-options: a config variable (pretrained=...)',
    '--cfg-options: list index that does not exist', '--cfg-options: item without "="',
    '--allow: a check that does not exist', '--work-dir is a file',
    '--work-dir where nothing may be written', '--work-dir name too long for the file system',
    'resume from a folder', 'test an empty checkpoint file',
    'test a checkpoint in torch\'s legacy format', 'typo in model.test_cfg.rcnn',
    'typo in model.train_cfg.rpn_proposal', 'typo in a segmentor\'s model.test_cfg',
    'typo in env_cfg', 'typo in randomness', 'mmdet 2.x key in a config (lr_config)',
    'top-level key one letter off (param_schedulers)',
]


class Reached(Exception):
    """The Runner was about to start: every check passed."""


def _watched(case, inputs, work):
    """The folder a case would write into."""
    for flag, name in (('--work-dir-held', 'held'), ('--work-dir-stale', 'stale')):
        if flag in case['argv']:
            return inputs.path(name)
    return work


def _snapshot(folder):
    return sorted(osp.join(r, f) for r, _, fs in os.walk(folder) for f in fs) \
        if osp.isdir(folder) else None


def test_every_case_is_listed_and_new(audit):
    from test_preflight import BAD_CASES
    assert sorted(audit[1]) == sorted(CASE_NAMES) and len(CASE_NAMES) >= 30
    assert not set(CASE_NAMES) & set(BAD_CASES)
    valid = [n for n in CASE_NAMES if audit[1][n]['valid']]
    assert len(valid) >= 10 and len(CASE_NAMES) - len(valid) >= 30


@pytest.mark.parametrize('name', CASE_NAMES)
def test_audit_case(name, audit, tmp_path, monkeypatch, capsys):
    """Refused: the tool exits with an error naming the problem and writes nothing (no
    work dir, input folders unchanged). Valid: no refusal; the train / test tools reach
    the Runner (replaced here by a stand-in: a real run of each is in the README table)."""
    from mmengine.runner import Runner
    inputs, cases = audit
    case = cases[name]
    work = str(tmp_path / 'work')
    tool_name, argv = case_argv(case, inputs, work)
    tool = load_tool(tool_name)

    def reached(cfg):
        raise Reached
    monkeypatch.setattr(Runner, 'from_cfg', staticmethod(reached))
    watched = _watched(case, inputs, work)
    before = _snapshot(watched)
    start = time.perf_counter()
    outcome, message = 'passed', ''
    try:
        tool.main(argv)
    except Reached:
        outcome = 'reached the Runner'
    except SystemExit as exc:
        outcome = 'refused'
        message = str(exc.code) if not isinstance(exc.code, int) else capsys.readouterr().err
    seconds = time.perf_counter() - start
    print(f'{name}: {outcome} in {seconds:.2f} s\n{message}')
    if case['valid']:
        assert outcome != 'refused', message
        return
    assert outcome == 'refused', f'{name} was not refused'
    assert case['expect'] in message, message
    assert message.startswith('error: ') or 'usage:' in message, message
    assert _snapshot(watched) == before, 'something was written'


# ---------------------------------------------------------------------------------------
# the README table: every case as a real subprocess
# ---------------------------------------------------------------------------------------
def _shorten(text, inputs):
    text = text.replace(inputs.root, 'AUDIT').replace(REPO + '/', '')
    for kind, root in inputs.toy.items():
        text = text.replace(root, f'TOY/{kind}')
    return text


def _command(tool, argv, inputs):
    shown = [a for a in argv]
    if '--cfg-options' in shown:  # the toy options are the same for every case: TOY_OPTS
        at = shown.index('--cfg-options') + 1
        toy = set(inputs.opts(DET) + inputs.opts(SEG))
        shown = shown[:at] + ['TOY_OPTS'] + [a for a in shown[at:] if a not in toy]
    return _shorten(f'python tools/{tool}.py ' + ' '.join(shown), inputs)


def run_table(out_path, only=()):
    import tempfile

    from backbones.datasets.toy_data import make_toy_data
    root = tempfile.mkdtemp(prefix='audit-')
    toy = make_toy_data(osp.join(root, 'toy'), num_train=8, num_val=4, seed=0)
    inputs = Inputs(osp.join(root, 'inputs'), toy)
    os.makedirs(inputs.root)
    cases = build_cases(inputs)
    holder = _holder(inputs.path('held'))
    _holder(inputs.path('stale'), kill=True)
    rows = ['| # | class | input | command | exit | seconds | written | message (first '
            'line) |', '|---|---|---|---|---|---|---|---|']
    try:
        for n, name in enumerate(CASE_NAMES, 1):
            if only and name not in only:
                continue
            case = cases[name]
            work = osp.join(root, 'work', str(n))
            tool, argv = case_argv(case, inputs, work)
            if case['valid'] and tool == 'train' and case.get('short', True):
                argv += SHORT[case['config']]
            env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
            watched = _watched(case, inputs, work)
            before = _snapshot(watched)
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, osp.join(TOOLS, f'{tool}.py'), *argv],
                                  cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=1800)
            seconds = time.perf_counter() - start
            after = _snapshot(watched)
            written = ('nothing' if after == before else
                       f'{len(after or []) - len(before or [])} files')
            said = [ln for ln in proc.stdout.splitlines() if case['expect'] and
                    case['expect'] in ln]
            lines = said or [ln for ln in proc.stdout.splitlines() if ln.startswith(
                ('error:', 'warning:', 'usage:')) or 'error: argument' in ln]
            first = _shorten(re.sub(r'\s+', ' ', (lines[-1] if lines else 'ran'))[:200],
                             inputs).replace(root, 'TMP')
            ok = (proc.returncode == 0) == case['valid'] and (
                case['valid'] or case['expect'] in proc.stdout)
            rows.append(f'| {n} | {CLASSES.get(case["cls"], 4) if case["cls"] else 4} | '
                        f'{name}{"" if ok else " **UNEXPECTED**"} | '
                        f'`{_command(tool, argv, inputs).replace(root, "TMP")}` | '
                        f'{proc.returncode} | '
                        f'{seconds:.1f} | {written} | {first.replace("|", "/")} |')
            print(rows[-1], flush=True)
            if not ok:
                print(proc.stdout[-3000:], flush=True)
    finally:
        holder.kill()
    with open(out_path, 'w') as f:
        f.write('\n'.join(rows) + '\n')


if __name__ == '__main__':
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument('--table', required=True)
    parser.add_argument('--only', nargs='*', default=(), help='case names')
    args = parser.parse_args()
    run_table(args.table, args.only)
