"""Start-up shared by the command-line tools: config loading, work dirs, CPU adaptation.

The tools serve mmdet and mmseg configs: the config's ``default_scope`` picks the library;
``backbones`` (this package) is imported before anything is built.
"""
import os
import os.path as osp
import sys

from .runtime import adapt_cfg_to_device, init_cpu_distributed

#: The checkout this (editable) package lives in: configs, results and tools are found here.
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

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


def find_configs(paths):
    """Config files in ``paths`` (files, or folders searched recursively, ``_base_`` left
    out), sorted per folder; a path that does not exist is an error."""
    import glob
    found = []
    for path in paths:
        if osp.isdir(path):
            found += sorted(p for p in glob.glob(osp.join(path, '**', '*.py'), recursive=True)
                            if '_base_' not in p.split(osp.sep))
        elif osp.isfile(path):
            found.append(path)
        else:
            sys.exit(f'error: no such config or folder: {path}')
    return found


def build_model(config, cfg_options=None):
    """Load ``config`` and build its model in the config's scope: ``(cfg, model)``."""
    from mmengine.registry import MODELS, DefaultScope
    cfg = load_config(config, cfg_options)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return cfg, MODELS.build(cfg.model)
