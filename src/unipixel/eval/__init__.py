"""Evaluation utilities for UniPixel.

``unipixel.eval.metrics`` holds the benchmark metrics (DAVIS J/F, cIoU/gIoU, box accuracy, ReVOS A/R,
GroundMoRe and PixelQA aggregation, multiple-choice answer parsing). Import it explicitly; this package
imports nothing heavy on its own.
"""
