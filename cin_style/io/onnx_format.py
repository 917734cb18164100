"""The ONNX file's contract, shared by the exporter (:mod:`cin_style.io.export`, PyTorch) and the
runtime (:mod:`cin_style.inference.onnx_model`, onnxruntime only): names and version of the
graph's inputs, output and metadata. Imports nothing, so the torch-free install can read it."""

#: ``metadata_props`` key whose value is the model's JSON record.
METADATA_KEY = "cin_style"
ONNX_FORMAT = "cin-style-onnx"
ONNX_FORMAT_VERSION = 1
#: The graph's input and output names.
INPUTS = ("image", "style")
OUTPUT = "stylized"
