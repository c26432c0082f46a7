"""LabSeg's ML core: the paper's U-Net, weight maps, augmentation, overlap-tile inference, metrics.

Plain Python (torch, numpy, scipy, scikit-image): no Django imports, usable from a notebook or the
command line (``python -m labseg.ml``). torch is imported by the modules that need it, not here.
"""
