"""Pre-flight checks: every problem with the config, model, checkpoints and data that can be
found before a run starts, reported at once, with nothing written."""
from .checks import (
                     PreflightError,
                     check_checkpoint,
                     check_data,
                     check_dataset,
                     check_model,
                     check_wiring,
                     preflight,
)
from .coco import check_coco, check_coco_json
from .config import check_config
from .images import probe_image, probe_images
from .seg import check_seg_labels, check_seg_pairs

__all__ = ['PreflightError', 'preflight', 'check_model', 'check_wiring', 'check_checkpoint',
           'check_data', 'check_dataset', 'check_config', 'check_coco', 'check_coco_json',
           'check_seg_labels', 'check_seg_pairs', 'probe_image', 'probe_images']
