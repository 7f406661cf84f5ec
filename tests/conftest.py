"""Every test process sees 8 fake CPU devices so mesh tests run beside single-device ones.

XLA_FLAGS must be set before jax is imported and cannot change in-process; tests that need another
device count or several processes start subprocesses.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
