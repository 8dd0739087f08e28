"""Side-by-side training-speed benchmarks: jaxbp vs NumPy and PyTorch.

Run ``python -m benchmarks.run``.

Kept free of imports on purpose: ``benchmarks.run`` may re-execute itself with OpenBLAS
settings changed, which must happen before NumPy is loaded.
"""
