"""Evaluation: ``FastCocoMetric`` (mmdet's CocoMetric on faster-coco-eval)."""
