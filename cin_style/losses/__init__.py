"""What a painted photo is scored by: VGG-16 features, the perceptual loss (Johnson et al. 2016;
content, Gram style, total variation), the stability term, and the optimization method of
Gatys et al. (2016) that minimizes the same loss over pixels. Training, evaluation and
``--refine`` use this one code. Imports :mod:`cin_style.io` and :mod:`cin_style.network`."""
