"""Files: images in and out (PIL, numpy, tensors; broken and odd files refused in one line), atomic
writes, paintings and photos as the losses see them, contact sheets, and model files
(safetensors and their ONNX export). Imports only :mod:`cin_style.network`."""
