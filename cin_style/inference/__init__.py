"""Painting photos with a trained model: :class:`StyleModel` (PyTorch) and the torch-free ONNX
model behind one front (:class:`~cin_style.inference.stylizer.Stylizer`), strokes at any
size, regions, memory limits, colour, video and multi-device prediction. Imports the layers
below it (losses, io, network); nothing here knows the command line or Lightning training."""
