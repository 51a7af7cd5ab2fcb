"""Shared start-up for tools/train.py and tools/test.py (not a public API).

Both tools serve mmdet and mmseg configs: the config's ``default_scope`` picks the
library, and the plugin package ``backbones`` is imported before anything is built.
"""
import os
import os.path as osp
import sys
import warnings

# mmengine imports pkg_resources (hence setuptools<81); its deprecation notice is noise here.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)

import backbones  # noqa: E402,F401  (registers backbones, allow-lists mmengine checkpoints)
from backbones.runtime import adapt_cfg_to_device, init_cpu_distributed  # noqa: E402

SCOPES = {'mmdet': 'mmdet.utils', 'mmseg': 'mmseg.utils'}


def load_config(path, cfg_options=None):
    """Load a config with a clear error for a missing path or an unknown scope."""
    from mmengine.config import Config
    if not osp.isfile(path):
        sys.exit(f'error: config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        sys.exit(f"error: {path}: default_scope must be one of {sorted(SCOPES)}, got {scope!r}")
    __import__(SCOPES[scope], fromlist=['register_all_modules']).register_all_modules(
        init_default_scope=False)
    return cfg


def default_work_dir(config):
    return osp.join('work_dirs', osp.splitext(osp.basename(config))[0])


def setup_device(cfg, launcher):
    """CPU adaptations (logged through mmengine's logger once the Runner exists)."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = '0'
    init_cpu_distributed(launcher)
    notes = []
    adapt_cfg_to_device(cfg, launcher, log=notes.append)
    return notes


def log_notes(notes):
    from mmengine.logging import print_log
    for note in notes:
        print_log(note, logger='current', level=30)  # WARNING: visible in every log
