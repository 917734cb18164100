"""Training with Lightning and Hydra: the photo data, the LightningModule that trains one
transformer on N styles, and the run that composes them from ``conf/``. Imports losses, io and
network; nothing of inference or the command line."""
