"""Lower precision: INT8 (Q/DQ, ONNX Runtime's static quantization) and accuracy measurement."""
