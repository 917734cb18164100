"""The network: the style transformer with conditional instance normalization (Dumoulin et al.
2017), its blocks, the fast CPU convolutions, region-by-region painting (tiles) and the style
names and blends that select its gamma/beta rows. Pure PyTorch: it knows nothing of files,
losses, Lightning or the command line, and imports no other layer of cin_style."""
