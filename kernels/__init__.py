"""Triton kernels (installed as genossa.kernels); each has a PyTorch reference in genossa.ops."""
