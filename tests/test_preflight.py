"""Bad input is refused before anything is written (backbones/preflight).

Every case goes through the real command line (``tools/train.py`` / ``tools/test.py``
``main(argv)``) on the toy data, with one mistake, and asserts: an ``error: `` exit whose
message names the problem, no work dir, the config file unchanged, and no pickled code
run. The README's "Reliability" table counts these cases.
"""
import hashlib
import json
import os
import os.path as osp
import re
import shutil
import time

import pytest
import torch

from conftest import REPO, TOOLS, load_tool, toy_options

train = load_tool('train')
test_tool = load_tool('test')

DET = osp.join(REPO, 'det_configs', 'mask-rcnn_mambaout-femto_fpn_8xb2-amp-1x_coco.py')
SEG = osp.join(REPO, 'seg_configs', 'upernet_mambaout-femto_8xb2-amp-160k_ade20k-512x512.py')
TD = 'train_dataloader.dataset'
VD = 'val_dataloader.dataset'


class Evil:
    """Unpickling this runs a command: a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def _mambaout_state(arch):
    from backbones.models.mambaout import MambaOut
    return MambaOut(arch=arch, out_indices=(0, 1, 2, 3)).state_dict()


def _detector_state(toy_data):
    """The state dict of the toy-configured femto detector (what a trained one holds)."""
    from mmengine.config import DictAction

    from backbones.engine.launch import build_model
    opts = {}
    for item in toy_options(DET, toy_data['coco'], scale=128) + ['model.backbone.init_cfg=None']:
        key, value = item.split('=', 1)
        opts[key] = DictAction._parse_iterable(value)
    return build_model(DET, opts)[1].state_dict()


class Files:
    """Writes the broken inputs of the cases into one folder."""

    def __init__(self, root, toy_data):
        self.root, self.toy = root, toy_data
        with open(osp.join(toy_data['coco'], 'annotations', 'instances_train2017.json')) as f:
            self.coco = json.load(f)

    def path(self, name):
        return str(self.root / name)

    def text(self, name, text):
        with open(self.path(name), 'w') as f:
            f.write(text)
        return self.path(name)

    def coco_json(self, name, **changes):
        """A copy of the toy train annotations with some lists replaced."""
        return self.text(name, json.dumps(dict(self.coco, **changes)))

    def annotations(self, name, index, **fields):
        anns = [dict(a) for a in self.coco['annotations']]
        anns[index].update(fields)
        return self.coco_json(name, annotations=anns)

    def copy(self, name, kind):
        """A copy of a toy dataset ('coco' or 'ade') to break."""
        dst = self.path(name)
        shutil.copytree(self.toy[kind], dst)
        return dst

    def ade_file(self, name, split='training', kind='annotations', index=0):
        root = self.copy(name, 'ade')
        folder = osp.join(root, kind, split)
        return root, osp.join(folder, sorted(os.listdir(folder))[index])

    def checkpoint(self, name, obj):
        torch.save(obj, self.path(name))
        return self.path(name)


def _resize_png(path, by=8):
    import cv2
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    cv2.imwrite(path, cv2.resize(mask, (mask.shape[1] + by, mask.shape[0]),
                                 interpolation=cv2.INTER_NEAREST))


def _truncate(path, keep=0.5):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])


def _nan(state, key=None):
    state = {k: v.clone() for k, v in state.items()}
    key = key or next(k for k, v in state.items() if v.is_floating_point())
    state[key].view(-1)[:3] = float('nan')
    return state


# ---------------------------------------------------------------------------------------
# the cases: name -> (tool, config, extra argv, --cfg-options, expected message)
# ---------------------------------------------------------------------------------------
def _coco_cases(files):
    """COCO annotation files and the images they list."""
    no_categories = files.text('no_categories.json', json.dumps(
        {k: v for k, v in files.coco.items() if k != 'categories'}))
    missing_image = files.copy('coco_missing_image', 'coco')
    os.remove(osp.join(missing_image, 'train2017', files.coco['images'][2]['file_name']))
    truncated = files.copy('coco_truncated', 'coco')
    _truncate(osp.join(truncated, 'train2017', files.coco['images'][1]['file_name']))
    images = [dict(i) for i in files.coco['images']]
    images[0]['width'] += 7
    twice = [dict(i) for i in files.coco['images']] + [dict(files.coco['images'][0])]
    anns = files.coco['annotations']
    return {
        'missing data root': ('train', DET, [], [f'{TD}.data_root=/nonexistent/coco/'],
                              'data root not found: /nonexistent/coco'),
        'missing annotation file': ('train', DET, [], [f'{TD}.ann_file=annotations/nope.json'],
                                    'annotation file not found'),
        'annotation without categories': ('train', DET, [], [f'{TD}.ann_file={no_categories}'],
                                          'not a COCO instances file: no list under categories'),
        'annotation with unknown category': (
            'train', DET, [], [f'{TD}.ann_file=' + files.annotations('cat.json', 0,
                                                                     category_id=99)],
            'category_id 99, which no category defines'),
        'annotation for unknown image': (
            'train', DET, [], [f'{TD}.ann_file=' + files.annotations('img.json', 0,
                                                                     image_id=12345)],
            'name an image that does not exist, e.g. annotation 1 has image_id 12345'),
        'annotation not JSON': ('train', DET, [], [f'{TD}.ann_file=' + files.text(
            'garbage.json', '{"images": [')], 'not a readable JSON'),
        'class names not in annotations': ('train', DET, [], [
            f'{TD}.metainfo.classes=(cat,dog,bird)', f'{VD}.metainfo.classes=(cat,dog,bird)'],
            'category names do not match the config'),
        'empty annotations list': ('train', DET, [], [f'{TD}.ann_file=' + files.coco_json(
            'empty.json', annotations=[])], 'the "annotations" list is empty'),
        'negative box width': ('train', DET, [], [f'{TD}.ann_file=' + files.annotations(
            'neg.json', 3, bbox=[40.0, 30.0, -12.0, 20.0])],
            '1 of 18 boxes are negative width or height (mmdet would drop them silently)'),
        'box outside its image': ('train', DET, [], [f'{TD}.ann_file=' + files.annotations(
            'out.json', 2, bbox=[900.0, 30.0, 12.0, 20.0])], 'boxes are outside its image'),
        'box not four numbers': ('train', DET, [], [f'{TD}.ann_file=' + files.annotations(
            'three.json', 1, bbox=[1.0, 2.0, 3.0])], 'boxes are not four finite numbers'),
        'duplicate image ids': ('train', DET, [], [f'{TD}.ann_file=' + files.coco_json(
            'twice.json', images=twice)], '1 image ids appear more than once'),
        'duplicate annotation ids': ('train', DET, [], [f'{TD}.ann_file=' + files.annotations(
            'dup_ann.json', 1, id=anns[0]['id'])], '1 annotation ids appear more than once'),
        'image missing on disk': ('train', DET, [], [f'{TD}.data_root={missing_image}/'],
                                  '1 of 8 images do not exist, e.g. '
                                  + osp.join(missing_image, 'train2017',
                                             files.coco['images'][2]['file_name'])),
        'truncated JPEG': ('train', DET, [], [f'{TD}.data_root={truncated}/'],
                           '1 of 8 images are truncated or unreadable: '
                           + files.coco['images'][1]['file_name'] + ': truncated'),
        'image size differs from its annotation': (
            'train', DET, [], [f'{TD}.ann_file=' + files.coco_json('size.json', images=images)],
            f'1 images differ in size from their annotation entry (width x height): '
            f'{images[0]["file_name"]} is {images[0]["width"] - 7}x'),
    }


def _ade_cases(files):
    """ADE20K folders: label values, label-map sizes, pairing, image files."""
    import cv2
    labels, first = files.ade_file('ade_labels')
    mask = cv2.imread(first, cv2.IMREAD_UNCHANGED)
    mask[:4, :4] = 200
    cv2.imwrite(first, mask)
    train_size, path = files.ade_file('ade_train_size')
    _resize_png(path)
    val_size, path = files.ade_file('ade_val_size', split='validation')
    _resize_png(path)
    unpaired, path = files.ade_file('ade_unpaired', index=3)
    os.remove(path)
    broken, path = files.ade_file('ade_broken_image', kind='images', index=2)
    with open(path, 'wb') as f:
        f.write(b'not a jpeg at all')
    return {
        'ADE20K label above 150': ('train', SEG, [], [f'{TD}.data_root={labels}/'],
                                   'cannot take (raw labels must be 1..150 (0 = other, '
                                   '255 = ignore)'),
        'ADE20K train label map of another size': (
            'train', SEG, [], [f'{TD}.data_root={train_size}/'],
            '1 of 8 label maps differ in size from their image'),
        'ADE20K val label map of another size': (
            'train', SEG, [], [f'{VD}.data_root={val_size}/'],
            'val: ' + osp.join(val_size, 'annotations', 'validation') + ': 1 of 4 label maps '
            'differ in size from their image'),
        'ADE20K image without label map': ('train', SEG, [], [f'{TD}.data_root={unpaired}/'],
                                           '1 of 8 images have no label map'),
        'ADE20K image unreadable': ('train', SEG, [], [f'{TD}.data_root={broken}/'],
                                    '1 of 8 images are truncated or unreadable: '
                                    'ADE_train_00000003.jpg: cannot be decoded'),
    }


def _config_cases():
    """Config mistakes that used to surface after the work dir existed, or never."""
    return {
        'unknown backbone size': ('train', DET, [], ['model.backbone.arch=huge'], 'huge'),
        'unknown backbone argument': ('train', DET, [], ['model.backbone.depth_scale=2'],
                                      "unexpected keyword argument 'depth_scale'"),
        'missing config': ('train', osp.join(REPO, 'det_configs', 'nope.py'), [], [],
                           'config file not found'),
        'num_classes differs from the classes (det)': (
            'train', DET, [], ['model.roi_head.bbox_head.num_classes=80'],
            'model.roi_head.bbox_head.num_classes is 80, but the train dataset has 3 classes'),
        'num_classes differs from the classes (seg)': (
            'train', SEG, [], ['model.decode_head.num_classes=151'],
            'model.decode_head.num_classes is 151, but the train dataset has 150 classes'),
        'train and val classes differ': ('train', DET, [], [
            f'{VD}.metainfo.classes=(disc,rectangle,triangle)'],
            'the datasets use different classes'),
        'metric scores another annotation file': ('train', DET, [], [
            'val_evaluator.ann_file={coco}/annotations/instances_train2017.json'],
            'the metric would score the predictions against other ground truth'),
        'batch size 0': ('train', DET, [], ['train_dataloader.batch_size=0'],
                         'train_dataloader.batch_size must be a positive integer, got 0'),
        'schedule of 0 epochs': ('train', DET, [], ['train_cfg.max_epochs=0'],
                                 'train_cfg.max_epochs must be a positive integer, got 0'),
        'typo in the loop config': ('train', DET, [], ['train_cfg.max_epoch=2'],
                                    'max_epoch is not read by EpochBasedTrainLoop (did you '
                                    'mean max_epochs?)'),
        'typo in the optimizer': ('train', DET, [], ['optim_wrapper.optimizer.lrr=0.1'],
                                  'lrr is not read by AdamW (did you mean lr?)'),
        'typo in paramwise_cfg': ('train', DET, [], [
            'optim_wrapper.paramwise_cfg.norm_decay_mul=0.0'],
            "norm_decay_mul is not read by mmengine's DefaultOptimWrapperConstructor"),
        'typo in a pipeline step': ('train', DET, [], [f'{TD}.pipeline.3.prop=0.5'],
                                    'prop is not read by RandomFlip (did you mean prob?)'),
        'typo in a dataloader key': ('train', SEG, [], ['train_dataloader.num_worker=2'],
                                     'num_worker is not read by the dataloader (did you mean '
                                     'num_workers?)'),
        'unknown optimizer type': ('train', DET, [], ['optim_wrapper.optimizer.type=AdamWW'],
                                   "unknown type 'AdamWW'"),
        'neck in_channels differ from the backbone': (
            'train', DET, [], ['model.neck.in_channels=[96,192,384,576]'],
            'model.neck.in_channels is [96, 192, 384, 576], but the backbone returns '
            '[48, 96, 192, 288]'),
        'seg head reads another backbone output': (
            'train', SEG, [], ['model.auxiliary_head.in_index=3'],
            'model.auxiliary_head.in_channels is 192, but the backbone returns [288] at '
            'in_index 3'),
    }


def _checkpoint_cases(files, toy_data, marker):
    """Pretrained, resume and test checkpoints."""
    evil = files.checkpoint('evil.pth', {'state_dict': _mambaout_state('femto'),
                                         'meta': Evil(marker)})
    tiny = files.checkpoint('mambaout_tiny.pth', {'model': _mambaout_state('tiny')})
    from timm import create_model
    other = files.checkpoint('convnext_atto.pth', create_model('convnext_atto').state_dict())
    nan_pretrained = files.checkpoint('nan_femto.pth', {'model': _nan(_mambaout_state('femto'))})
    good = files.checkpoint('epoch_1.pth', {'state_dict': {}, 'meta': {'epoch': 1}})
    truncated = files.path('truncated.pth')
    with open(good, 'rb') as src, open(truncated, 'wb') as dst:
        dst.write(src.read()[:-200])
    detector = _detector_state(toy_data)
    nan_det = files.checkpoint('nan_epoch_1.pth', {'state_dict': _nan(
        detector, 'roi_head.bbox_head.fc_cls.weight'), 'meta': {'epoch': 1}})
    backbone_only = files.checkpoint('backbone_epoch_1.pth', {'state_dict': {
        f'backbone.{k}': v for k, v in _mambaout_state('tiny').items()}, 'meta': {'epoch': 1}})
    official = files.checkpoint('official_layout.pth', {'model': detector})
    return {
        'pretrained of another size': ('train', DET, [], [
            f'model.backbone.init_cfg.checkpoint={tiny}'], 'shape mismatches'),
        'pretrained of another architecture': ('train', DET, [], [
            f'model.backbone.init_cfg.checkpoint={other}'], 'missing keys'),
        'pretrained with NaN weights': ('train', DET, [], [
            f'model.backbone.init_cfg.checkpoint={nan_pretrained}'],
            'holds non-finite weights: 1 tensors with NaN/inf values (3 of their'),
        'malicious pretrained checkpoint': ('train', DET, [], [
            f'model.backbone.init_cfg.checkpoint={evil}'], 'could run arbitrary code'),
        'malicious resume checkpoint': ('train', DET, ['--resume', evil], [],
                                        'could run arbitrary code'),
        'truncated resume checkpoint': ('train', DET, ['--resume', truncated], [],
                                        'not a complete torch checkpoint'),
        'missing resume checkpoint': ('train', DET, ['--resume', files.path('nope.pth')], [],
                                      'checkpoint file not found'),
        'resume checkpoint with NaN weights': ('train', DET, ['--resume', nan_det], [],
                                               'holds non-finite weights'),
        'resume checkpoint of another model': ('train', DET, ['--resume', backbone_only], [],
                                               "does not match the config's model (MaskRCNN)"),
        'test: malicious checkpoint': ('test', DET, [evil], [], 'could run arbitrary code'),
        'test: truncated checkpoint': ('test', DET, [truncated], [],
                                       'not a complete torch checkpoint'),
        'test: checkpoint of another model': (
            'test', DET, [backbone_only], [],
            "does not match the config's model (MaskRCNN):\n  missing keys ("),
        'test: checkpoint with NaN weights': (
            'test', DET, [nan_det], [], 'non-finite weights: 1 tensors with NaN/inf values '
            '(3 of their 4096 values), e.g. roi_head.bbox_head.fc_cls.weight (3)'),
        'test: weights only under "model"': ('test', DET, [official], [],
                                             'unexpected keys (1): model'),
        'test: --out not a .pkl': ('test', DET, [good, '--out', files.path('res.json')], [],
                                   '--out must be a .pkl file for detection'),
        'test: --tta without tta_model': ('test', DET, [good, '--tta'], [],
                                          '--tta needs tta_model and tta_pipeline'),
    }


@pytest.fixture(scope='module')
def bad_inputs(toy_data, tmp_path_factory):
    root = tmp_path_factory.mktemp('bad')
    files = Files(root, toy_data)
    marker = str(root / 'pwned')
    cases = {**_coco_cases(files), **_ade_cases(files), **_config_cases(),
             **_checkpoint_cases(files, toy_data, marker)}
    return cases, marker


# Listed here (not read from the fixture) so pytest can name each case; a test below checks
# the two lists agree.
BAD_CASES = [
    'missing data root', 'missing annotation file', 'annotation without categories',
    'annotation with unknown category', 'annotation for unknown image', 'annotation not JSON',
    'class names not in annotations', 'empty annotations list', 'negative box width',
    'box outside its image', 'box not four numbers', 'duplicate image ids',
    'duplicate annotation ids', 'image missing on disk', 'truncated JPEG',
    'image size differs from its annotation',
    'ADE20K label above 150', 'ADE20K train label map of another size',
    'ADE20K val label map of another size', 'ADE20K image without label map',
    'ADE20K image unreadable',
    'unknown backbone size', 'unknown backbone argument', 'missing config',
    'num_classes differs from the classes (det)', 'num_classes differs from the classes (seg)',
    'train and val classes differ', 'metric scores another annotation file', 'batch size 0',
    'schedule of 0 epochs', 'typo in the loop config', 'typo in the optimizer',
    'typo in paramwise_cfg', 'typo in a pipeline step', 'typo in a dataloader key',
    'unknown optimizer type', 'neck in_channels differ from the backbone',
    'seg head reads another backbone output',
    'pretrained of another size', 'pretrained of another architecture',
    'pretrained with NaN weights', 'malicious pretrained checkpoint',
    'malicious resume checkpoint', 'truncated resume checkpoint', 'missing resume checkpoint',
    'resume checkpoint with NaN weights', 'resume checkpoint of another model',
    'test: malicious checkpoint', 'test: truncated checkpoint',
    'test: checkpoint of another model', 'test: checkpoint with NaN weights',
    'test: weights only under "model"', 'test: --out not a .pkl',
    'test: --tta without tta_model',
]


def _digest(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest() if osp.isfile(path) else None


def _argv(case, toy_data, work_dir):
    tool, config, argv, overrides, _ = case
    task = 'seg' if config == SEG else 'det'
    if not osp.isfile(config):
        return [config, '--work-dir', str(work_dir)]
    opts = toy_options(config, toy_data['ade' if task == 'seg' else 'coco'], scale=128)
    if not any('init_cfg' in o for o in overrides):
        opts.append('model.backbone.init_cfg=None')
    overrides = [o.format(coco=toy_data['coco']) for o in overrides]
    if tool == 'test':  # CHECKPOINT [flags]
        return [config, argv[0], '--work-dir', str(work_dir), *argv[1:], '--cfg-options',
                *opts, *overrides]
    return [config, '--work-dir', str(work_dir), *argv, '--cfg-options', *opts, *overrides]


def refused(tool, argv, work_dir, config):
    """Run ``tool.main(argv)``; return its error message after the common assertions."""
    digest = _digest(config)
    with pytest.raises(SystemExit) as exc:
        tool.main(argv)
    message = str(exc.value.code)
    assert message.startswith('error: '), message
    assert not work_dir.exists(), 'the work dir was created before the error'
    assert _digest(config) == digest, 'the config file was changed'
    return message


@pytest.mark.parametrize('case', BAD_CASES)
def test_bad_input_fails_before_anything_is_written(case, bad_inputs, toy_data, tmp_path):
    cases, marker = bad_inputs
    work_dir = tmp_path / 'work'
    tool = train if cases[case][0] == 'train' else test_tool
    message = refused(tool, _argv(cases[case], toy_data, work_dir), work_dir, cases[case][1])
    print(message)
    assert cases[case][4] in message, message
    assert not osp.exists(marker), 'pickled code ran'


def test_every_case_is_listed(bad_inputs):
    assert sorted(bad_inputs[0]) == sorted(BAD_CASES)
    assert len(BAD_CASES) >= 30


def test_all_problems_are_listed_at_once(bad_inputs, toy_data, tmp_path):
    """Three mistakes in three places: one error names all three."""
    work_dir = tmp_path / 'work'
    argv = _argv(('train', DET, [], [
        'train_dataloader.batch_size=0', 'optim_wrapper.optimizer.lrr=1',
        f'{TD}.data_root=' + bad_inputs[0]['truncated JPEG'][3][0].split('=', 1)[1]], ''),
        toy_data, work_dir)
    message = refused(train, argv, work_dir, DET)
    for expected in ('batch_size must be a positive integer', 'lrr is not read by AdamW',
                     'images are truncated or unreadable'):
        assert expected in message, message


@pytest.mark.slow
def test_allow_partial_evaluates_but_never_writes_metrics_json(bad_inputs, toy_data, tmp_path):
    """--allow-partial runs the evaluation of a checkpoint that does not fit, warns, and
    keeps its numbers out of metrics.json, so the leaderboard cannot collect them."""
    from backbones.results.runs import PARTIAL_RECORD, RunError, load_run
    cases, _ = bad_inputs
    _, config, argv, overrides, _ = cases['test: checkpoint of another model']
    work_dir = tmp_path / 'work'
    test_tool.main(_argv(('test', config, [argv[0], '--allow-partial'], overrides, ''),
                         toy_data, work_dir))
    assert not (work_dir / 'metrics.json').exists()
    record = json.loads((work_dir / PARTIAL_RECORD).read_text())
    assert 'missing keys (' in record['partial_checkpoint'] and 'coco/bbox_mAP' in record['metrics']
    with pytest.raises(RunError, match='evaluated with --allow-partial'):
        load_run(str(work_dir))


def test_degenerate_boxes_are_a_warning_not_an_error(tmp_path, toy_data):
    """Boxes under a pixel (COCO has a few) are what mmdet ignores: reported, not refused."""
    from backbones.preflight import check_coco_json
    with open(osp.join(toy_data['coco'], 'annotations', 'instances_train2017.json')) as f:
        data = json.load(f)
    data['annotations'][0]['bbox'][2] = 0.5
    path = tmp_path / 'thin.json'
    path.write_text(json.dumps(data))
    warnings = []
    assert check_coco_json(str(path), warnings=warnings) == []
    assert len(warnings) == 1 and '1 of 18 boxes are under one pixel' in warnings[0]


def test_image_probe_tells_missing_truncated_and_good_files(tmp_path, toy_data):
    from backbones.preflight import probe_image
    jpg = osp.join(toy_data['coco'], 'train2017', '000000000001.jpg')
    png = sorted(os.listdir(osp.join(toy_data['ade'], 'annotations', 'training')))[0]
    png = osp.join(toy_data['ade'], 'annotations', 'training', png)
    assert probe_image(jpg)[2] is None and probe_image(png)[2] is None
    assert probe_image(jpg, full=True)[1] == probe_image(jpg)[1]
    for src in (jpg, png):
        cut = str(tmp_path / osp.basename(src))
        shutil.copy(src, cut)
        _truncate(cut, 0.6)
        assert probe_image(cut)[2] is not None, src  # the quick check sees it
        assert probe_image(cut, full=True)[2] is not None, src
    assert probe_image(str(tmp_path / 'nope.jpg'))[2] == 'missing'


def test_data_check_cost_on_the_toy_set(toy_data):
    """Measured, not asserted: what the data checks add to a start (README table)."""
    from mmengine.config import DictAction

    from backbones.engine.launch import load_config
    from backbones.preflight import check_data
    for config, data in ((DET, 'coco'), (SEG, 'ade')):
        opts = {}
        for item in toy_options(config, toy_data[data], scale=128):
            key, value = item.split('=', 1)
            opts[key] = DictAction._parse_iterable(value)
        cfg = load_config(config, opts)
        for full in (False, True):
            start = time.perf_counter()
            assert check_data(cfg, ('train', 'val'), full=full) == []
            print(f'{data} data check (full={full}): {time.perf_counter() - start:.3f} s '
                  f'for 12 images')


def test_paramwise_keys_are_the_ones_mmengine_reads():
    """The allow-list of paramwise_cfg options is mmengine's own (a newer mmengine that
    reads another option shows here)."""
    import inspect

    from mmengine.optim import DefaultOptimWrapperConstructor

    from backbones.preflight.config import PARAMWISE_KEYS
    source = inspect.getsource(DefaultOptimWrapperConstructor)
    assert set(re.findall(r"paramwise_cfg\.get\(\s*'(\w+)'", source)) == PARAMWISE_KEYS


def test_shipped_configs_pass_the_config_checks(toy_data):
    """No false alarms: every config of the suite, as the toy runs use it, is clean."""
    import glob

    from mmengine.config import DictAction

    from backbones.engine.launch import load_config
    from backbones.preflight import check_config
    paths = [p for p in glob.glob(osp.join(REPO, '*_configs', '**', '*.py'), recursive=True)
             + glob.glob(osp.join(REPO, 'tests', 'configs', '*.py')) if '_base_' not in p]
    assert len(paths) >= 20
    for path in paths:
        data = toy_data['coco' if 'mask-rcnn' in osp.basename(path) else 'ade']
        opts = {}
        for item in toy_options(path, data, scale=128):
            key, value = item.split('=', 1)
            opts[key] = DictAction._parse_iterable(value)
        cfg = load_config(path, opts)
        assert check_config(cfg, ('train', 'val')) + check_config(cfg, ('test',)) == [], path


def test_tool_paths():
    assert osp.dirname(test_tool.__file__) == TOOLS == osp.dirname(train.__file__)


def test_config_key_lists_are_the_ones_the_libraries_read():
    """The hand-written key lists of the config checks (backbones/preflight/config.py) hold
    only keys the pinned libraries (or our tools) read: a key no code reads would let its
    typo through; a key missing from the list would be a false alarm on a shipped config
    (test_shipped_configs_pass_the_config_checks)."""
    import glob
    import importlib
    import inspect

    import mmdet
    import mmengine.config.config
    import mmengine.runner.runner
    import mmseg

    from backbones.preflight.config import MODEL_CFG_KEYS, NMS_KEYS, RUNNER_KEYS

    def source(paths):
        return ''.join(open(p).read() for p in paths)
    ours = source(glob.glob(osp.join(REPO, 'backbones', 'engine', '*.py')))
    runner = inspect.getsource(mmengine.runner.runner) + inspect.getsource(
        mmengine.config.config) + ours
    for key in RUNNER_KEYS:
        assert re.search(rf"'{key}'|\.{key}\b", runner), key
    det_root = osp.dirname(mmdet.__file__)
    det = source([osp.join(det_root, p) for p in (
        'models/dense_heads/rpn_head.py', 'models/dense_heads/anchor_head.py',
        'models/dense_heads/base_dense_head.py', 'models/roi_heads/standard_roi_head.py',
        'models/roi_heads/bbox_heads/bbox_head.py', 'models/roi_heads/mask_heads/fcn_mask_head.py',
        'structures/mask/mask_target.py', 'models/detectors/two_stage.py')])
    det_base = open(osp.join(det_root, '.mim', 'configs', '_base_', 'models',
                             'mask-rcnn_r50_fpn.py')).read()
    for part, stages in MODEL_CFG_KEYS['TwoStageDetector'].items():
        for stage, keys in stages.items():
            assert re.search(rf"\b{stage}\b", det), stage
            for key in keys:  # 'debug': in mmdet's own base config, read by nothing
                assert re.search(rf"(\.|get\(|\[)'?{key}\b", det) if key != 'debug' \
                    else re.search(rf"\b{key}=", det_base), (part, stage, key)
    seg = open(osp.join(osp.dirname(mmseg.__file__), 'models', 'segmentors',
                        'encoder_decoder.py')).read()
    for key in MODEL_CFG_KEYS['EncoderDecoder']['test_cfg']:
        assert re.search(rf"test_cfg(\.|\.get\('|\[')'?{key}\b", seg), key
    nms = inspect.getsource(importlib.import_module('mmcv.ops.nms'))  # not mmcv.ops.nms, the
    # function of that name
    assert NMS_KEYS == {k for k in NMS_KEYS if re.search(rf"\b{k}\b", nms)}
