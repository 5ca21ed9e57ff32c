"""Measuring a network: how big, how costly and how fast it is, on this machine.

- :mod:`.complexity`: trainable parameters and MACs (fvcore); :mod:`.catalog` tabulates them
  for ``archbench list``.
- :mod:`.latency` (with :mod:`.backends`): per-sample latency and throughput on five backends.
- :mod:`.export`: ONNX export with a pinned opset, and its parity with PyTorch.
- :mod:`.onnxrt`: the single ONNX Runtime session factory every caller uses.
- :mod:`.models`: a model in eval mode on a device, and a fixed thread count.
- :mod:`.roofline`: the machine's measured peaks and how far a latency is from them.
- :mod:`.sysinfo`: the machine and software every figure is recorded with.
- :mod:`.exclusive`: the per-node lock that keeps training away while latency is measured.

Names are imported from their modules (``from archbench.measure.latency import
measure_latency``): importing this package loads nothing heavy.
"""
