"""``coco``: COCO evaluation (bbox + segm) of FastCocoMetric on faster-coco-eval vs pycocotools.

On toy ground truth with Mask R-CNN-like detections: the whole ``compute_metrics`` of
FastCocoMetric on faster-coco-eval, on pycocotools (its fallback) and of mmdet's stock
CocoMetric, timed side by side; the metrics must be identical and COCOeval's raw stats of
both engines equal.
"""
import contextlib
import glob
import io
import json
import os
import os.path as osp
import tempfile
import time

from ..datasets.toy_data import shape_polygon
from ..datasets.toy_options import TOY_COCO_CLASSES
from .common import Benchmark, fmt_seconds, head, make_record, notes_md, target, time_interleaved

__all__ = ['CocoEval', 'toy_coco']
BACKENDS = ('faster_coco_eval', 'pycocotools', 'mmdet_CocoMetric')


def _polygon(kind, cx, cy, r, rng):
    """A toy dataset shape as an (n, 2) array."""
    import numpy as np
    return np.asarray(shape_polygon(kind, cx, cy, r, rng), dtype=np.float64)


def toy_coco(num_images, seed=0, size=(480, 640), dets_per_image=100):
    """Ground truth (COCO dict) and detections (mmdet CocoMetric results) for ``num_images``:
    detections jitter each object's polygon (box and mask move together), miss some, swap a
    few labels, with scores that fall as the jitter grows, and low-scored false positives
    fill each image up to about ``dets_per_image`` (what Mask R-CNN's test_cfg keeps)."""
    import numpy as np
    import pycocotools.mask as mask_utils
    rng = np.random.default_rng(seed)
    h, w = size
    images, anns, preds = [], [], []

    def encode(poly):
        return mask_utils.merge(mask_utils.frPyObjects([poly.ravel().tolist()], h, w))

    for img_id in range(1, num_images + 1):
        images.append({'id': img_id, 'width': w, 'height': h, 'file_name': f'{img_id:06d}.jpg'})
        boxes, scores, labels, masks = [], [], [], []
        for _ in range(rng.integers(1, 9)):
            label = int(rng.integers(0, 3))
            r = rng.uniform(8, 150)
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            poly = _polygon(TOY_COCO_CLASSES[label], cx, cy, r, rng)
            rle = encode(poly)
            x, y, bw, bh = mask_utils.toBbox(rle).tolist()
            anns.append({'id': len(anns) + 1, 'image_id': img_id, 'category_id': label + 1,
                         'bbox': [x, y, bw, bh], 'area': float(mask_utils.area(rle)),
                         'iscrowd': 0, 'segmentation': [poly.ravel().tolist()]})
            if rng.random() < 0.1:
                continue  # missed
            jitter = rng.normal(0, 0.12, 3)
            dpoly = (poly - [cx, cy]) * (1 + jitter[2]) + [cx + jitter[0] * r, cy + jitter[1] * r]
            dpoly = np.clip(dpoly, 0, [w - 1, h - 1])
            drle = encode(dpoly)
            boxes.append(mask_utils.toBbox(drle) + [0, 0, 0, 0])
            scores.append(float(np.clip(1 - np.abs(jitter).sum() + rng.normal(0, 0.1), 0.01, 1)))
            labels.append(label if rng.random() > 0.05 else int(rng.integers(0, 3)))
            masks.append(drle)
        # false positives: a detector keeps up to 100 boxes per image above score 0.05
        # (mmdet's Mask R-CNN test_cfg), most of them wrong and low-scored
        for _ in range(max(0, int(rng.integers(dets_per_image * 3 // 4, dets_per_image + 1))
                           - len(boxes))):
            r = rng.uniform(8, 80)
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            drle = encode(_polygon('rectangle', cx, cy, r, rng))
            boxes.append(mask_utils.toBbox(drle))
            scores.append(float(rng.uniform(0.01, 0.6)))
            labels.append(int(rng.integers(0, 3)))
            masks.append(drle)
        xywh = np.array(boxes, np.float64).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        preds.append(({'img_id': img_id, 'width': w, 'height': h},  # (gt, pred), as mmdet
                      {'img_id': img_id, 'bboxes': xyxy, 'scores': np.array(scores),
                       'labels': np.array(labels, np.int64), 'masks': masks}))
    gt = {'images': images, 'annotations': anns,
          'categories': [{'id': i + 1, 'name': n} for i, n in enumerate(TOY_COCO_CLASSES)]}
    return gt, preds


def coco_metric(ann_file, backend, workers=None):
    """FastCocoMetric on ``backend``, or mmdet's stock CocoMetric for 'mmdet_CocoMetric'."""
    from mmdet.evaluation import CocoMetric

    from ..evaluation.coco_metric import FastCocoMetric
    kwargs = dict(ann_file=ann_file, metric=['bbox', 'segm'])
    metric = CocoMetric(**kwargs) if backend == 'mmdet_CocoMetric' else \
        FastCocoMetric(**kwargs, backend=backend, iou_workers=workers)
    metric.dataset_meta = {'classes': TOY_COCO_CLASSES}
    return metric


def raw_stats(ann_file, result_prefix, backend):
    """COCOeval's 12 stats per IoU type at full precision (mmdet rounds to 3 decimals)."""
    if backend == 'faster_coco_eval':
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    stats, seconds = {}, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        for iou in ('bbox', 'segm'):
            with open(f'{result_prefix}.{iou}.json') as f:
                dets = json.load(f)
            if iou == 'segm':
                for d in dets:
                    d.pop('bbox')  # as mmdet does: mask areas, not box areas
            t0 = time.perf_counter()
            ev = COCOeval(gt, gt.loadRes(dets), iou)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            seconds += time.perf_counter() - t0
            stats[iou] = [float(s) for s in ev.stats]
    return stats, seconds


def python_profile(fn, n):
    """The ``n`` Python-level functions with the most self time in one call of ``fn``."""
    import cProfile
    import pstats
    prof = cProfile.Profile()
    prof.runcall(fn)
    st = pstats.Stats(prof).stats
    total = sum(v[2] for v in st.values()) or 1
    rows = sorted(st.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return [{'function': f'{osp.basename(k[0])}:{k[2]}' if k[0] != '~' else k[2],
             'self_s': round(v[2], 3), 'share': round(v[2] / total, 3)} for k, v in rows]


class CocoEval(Benchmark):
    name = 'coco'
    help = 'COCO evaluation: faster-coco-eval vs pycocotools'

    def add_arguments(self, p):
        p.add_argument('--images', type=int, default=500)
        p.add_argument('--dets-per-image', type=int, default=100,
                       help='detections per image, about (Mask R-CNN keeps up to 100)')
        p.add_argument('--repeats', type=int, default=3)
        p.add_argument('--seed', type=int, default=0)

    def run(self, args, device):
        from mmengine.logging import MMLogger
        MMLogger.get_instance('benchmark', log_level='WARNING')
        tmp = tempfile.mkdtemp(prefix='bench-coco-')
        try:
            results, t = self._measure(args, device, tmp)
        finally:
            for f in glob.glob(osp.join(tmp, '*')):
                os.unlink(f)
            os.rmdir(tmp)
        speedup = t['pycocotools']['median_s'] / t['faster_coco_eval']['median_s']
        worst = results['stats_max_abs_diff']
        ok = worst <= 1e-4 and results['metrics_identical']
        why = (f"COCOeval alone (loadRes, evaluate, accumulate, summarize) is "
               f"{results['engine_only_speedup']}x faster; the rest is work both backends share "
               f"(mmdet's results2json, JSON I/O, RLE areas). Self time of the faster path: " +
               ', '.join(f"{p['function']} {p['share']:.0%}"
                         for p in results['profile_faster'][:5]))
        fast = speedup >= 3
        targets = [target('FastCocoMetric faster-coco-eval vs pycocotools (bbox + segm)',
                          '>= 3x', round(speedup, 2), fast and ok, '' if fast else why),
                   target('identical AP', '<= 1e-4', worst, ok)]
        print(f'{args.images} images: faster-coco-eval {t["faster_coco_eval"]["median_s"]:.2f}s, '
              f'pycocotools {t["pycocotools"]["median_s"]:.2f}s, x{speedup:.2f}, '
              f'max diff {worst}')
        notes = ['time = the whole compute_metrics (results to JSON, loadRes, evaluate, '
                 'accumulate, summarize) for bbox and segm, after the metric is built (ground '
                 f'truth loaded), faster-coco-eval with iou_workers={args.threads}; contenders: '
                 'FastCocoMetric on faster-coco-eval, FastCocoMetric on '
                 'pycocotools (its fallback), mmdet\'s stock CocoMetric (what the configs used '
                 'before); stats = COCOeval.stats at full precision from both engines on the '
                 'same result files.']
        return make_record(self.name, args, device, results, targets, notes)

    @staticmethod
    def _measure(args, device, tmp):
        """The ``results`` of the record (and the timings), working in the folder ``tmp``."""
        gt, preds = toy_coco(args.images, seed=args.seed, dets_per_image=args.dets_per_image)
        ann_file = osp.join(tmp, 'instances.json')
        with open(ann_file, 'w') as f:
            json.dump(gt, f)
        metrics, values = {}, {}
        for b in BACKENDS:
            metrics[b] = coco_metric(ann_file, b, workers=args.threads)  # as torch's threads
            metrics[b].outfile_prefix = osp.join(tmp, b)

        def evaluate(b):
            # compute_metrics only turns RLE counts from bytes to str in place: no copy needed
            with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its tables
                values[b] = metrics[b].compute_metrics(preds)

        t = time_interleaved({b: (lambda b=b: evaluate(b)) for b in BACKENDS}, args.repeats,
                             device)
        stats, engine_s = {}, {}
        for b in BACKENDS[:2]:
            stats[b], engine_s[b] = raw_stats(ann_file, osp.join(tmp, 'pycocotools'), b)
        worst = max(abs(x - y) for iou in ('bbox', 'segm')
                    for x, y in zip(stats['faster_coco_eval'][iou], stats['pycocotools'][iou]))
        same_metrics = values['faster_coco_eval'] == values['pycocotools'] == \
            values['mmdet_CocoMetric']
        fastest = t['faster_coco_eval']['median_s']
        results = {'images': args.images, 'gt_objects': len(gt['annotations']),
                   'detections': int(sum(len(p[1]['scores']) for p in preds)),
                   'time': t, 'speedup': round(t['pycocotools']['median_s'] / fastest, 2),
                   'speedup_vs_mmdet_CocoMetric':
                       round(t['mmdet_CocoMetric']['median_s'] / fastest, 2),
                   'engine_only_s': engine_s, 'engine_only_speedup':
                       round(engine_s['pycocotools'] / engine_s['faster_coco_eval'], 2),
                   'metrics': values['faster_coco_eval'], 'metrics_identical': same_metrics,
                   'stats': stats, 'stats_max_abs_diff': worst}
        results['profile_faster'] = python_profile(lambda: evaluate('faster_coco_eval'), 8)
        return results, t

    def render(self, name, rec):
        r = rec['results']
        t = r['time']
        out = head(rec, 'COCO evaluation (bbox + segm), FastCocoMetric')
        out += ['| images / objects / detections | faster-coco-eval | pycocotools (fallback) | '
                "x | mmdet's CocoMetric | x | max stat diff | metrics identical |",
                '|' + ' --- |' * 8,
                f"| {r['images']} / {r['gt_objects']} / {r['detections']} | "
                f"{fmt_seconds(t['faster_coco_eval']['median_s'])} s | "
                f"{fmt_seconds(t['pycocotools']['median_s'])} s | {r['speedup']}x | "
                f"{fmt_seconds(t['mmdet_CocoMetric']['median_s'])} s | "
                f"{r['speedup_vs_mmdet_CocoMetric']}x | {r['stats_max_abs_diff']:.1e} | "
                f"{'yes' if r['metrics_identical'] else 'NO'} |", '']
        return out + notes_md(rec)
