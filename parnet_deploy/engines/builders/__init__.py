"""Builders turn one ONNX file into one engine file for one device (imported lazily)."""
