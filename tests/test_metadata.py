"""results/backbones.csv, the one source of backbone metadata, agrees with the configs, and
the complexity cache it keys does not depend on where the checkout lives."""
import csv
import os.path as osp
import shutil

import pytest
from mmengine.config import Config

from backbones import metadata
from backbones.analysis.complexity import CONFIG_DIRS, config_digest
from backbones.engine.launch import REPO, find_configs


def _configs():
    """The table rows' configs: those at the top of det_configs/ and seg_configs/ (examples/,
    variants/ and release/ hold configs derived from them, with no row of their own)."""
    return [p for p in find_configs(CONFIG_DIRS) if osp.dirname(p) in CONFIG_DIRS]


@pytest.mark.parametrize('path', _configs(), ids=osp.basename)
def test_every_config_has_its_row_and_they_agree(path):
    row = metadata.row_for_config(path)
    assert row is not None, f'{osp.basename(path)} has no row in results/backbones.csv'
    cfg = Config.fromfile(path, import_custom_modules=False)
    backbone = cfg.model.backbone
    # TimmBackbone rows name the timm model in ``arch``; others the backbone's own ``arch``
    arch = backbone.model_name if backbone.type == 'TimmBackbone' else backbone.arch
    assert (backbone.type, arch) == (row.type, row.arch)
    assert backbone.init_cfg.checkpoint == row.checkpoint == cfg.pretrained
    task = 'det' if cfg.default_scope == 'mmdet' else 'seg'
    assert row.config(task) == osp.basename(path)


def test_rows_name_each_backbone_once_and_map_back():
    rows = metadata.load_rows()
    assert len({r.backbone for r in rows}) == len(rows)
    for row in rows:
        if row.type:
            assert metadata.row_for_backbone(row.type, row.arch) is row
    styles = metadata.family_styles()
    assert styles['MambaOut'] == ('tab:red', 'o') and styles['VMambaV9'] == ('tab:blue', 's')


def test_a_bad_row_fails_naming_its_line(tmp_path, monkeypatch):
    bad = tmp_path / 'rows.csv'
    lines = open(metadata.ROWS_CSV).read().splitlines()
    bad.write_text('\n'.join(lines[:2] + ['X-T,X,huge,Conv,X,t,missing.py,,,,,,']) + '\n')
    with pytest.raises(ValueError, match=r"rows.csv:3 \(X-T\): size 'huge'.*missing.py is not"):
        metadata.load_rows(str(bad))


def test_complexity_cache_is_reused_from_any_checkout(tmp_path):
    """The committed digests equal those computed here, and from a copy of the configs
    elsewhere, so a fresh clone re-measures nothing that did not change."""
    with open(osp.join(REPO, 'results', 'complexity.csv'), newline='') as f:
        committed = {r['config']: r['config_digest'] for r in csv.DictReader(f)}
    configs = find_configs(CONFIG_DIRS)
    assert {osp.basename(p) for p in configs} == set(committed)
    for folder in CONFIG_DIRS:
        shutil.copytree(folder, tmp_path / osp.basename(folder))
    for path in configs:
        here = config_digest(Config.fromfile(path))
        moved = config_digest(Config.fromfile(str(tmp_path / osp.relpath(path, REPO))))
        assert here == moved == committed[osp.basename(path)], osp.basename(path)


def test_complexity_digest_follows_the_model():
    path = osp.join(REPO, 'det_configs', 'mask-rcnn_mambaout-t_fpn_8xb2-amp-1x_coco.py')
    cfg = Config.fromfile(path)
    digest = config_digest(cfg)
    cfg.model.backbone.init_cfg.checkpoint = '/elsewhere/weights.pth'
    cfg.train_dataloader.dataset.data_root = '/elsewhere/coco/'
    assert config_digest(cfg) == digest  # weights and data do not change the count
    cfg.model.backbone.drop_path_rate = 0.1
    cfg.model.neck.out_channels = 128
    assert config_digest(cfg) != digest
