"""Model converters: ONNX and TensorFlow GraphDef front-ends over one ``torch.fx`` back-end.

- ``onnx_front.convert_onnx`` and ``arcface_check.check_arcface_onnx`` (ONNX),
- ``facenet.load_facenet`` / ``graphdef_front.convert_graphdef`` (FaceNet's frozen GraphDef),
- ``fx_builder.FxBuilder``: the shared graph and module builder both front-ends emit into.

Nothing is imported here, so that ``graphdef_reader`` stays importable without torch.
"""
