"""The `device/` group: where and in which precision a run computes."""

from __future__ import annotations

import torch

from node_lab.errors import ConfigError, check_choice, check_number

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class Device:
    """**Arguments:** ``name`` (cpu | cuda | auto: cuda when available), ``threads`` (torch CPU
    threads; null keeps torch's default), ``dtype`` (float32 | float64)."""

    def __init__(self, name: str = "cpu", threads: int | None = None, dtype: str = "float32") -> None:
        check_choice("name", name, ["cpu", "cuda", "auto"])
        check_number("threads", threads, kind=int, low=1, allow_none=True)
        check_choice("dtype", dtype, list(DTYPES))
        if name == "cuda" and not torch.cuda.is_available():
            raise ConfigError("name", name, "CUDA is not available on this machine "
                              f"(torch {torch.__version__}, torch.cuda.is_available() is False)",
                              choices=["cpu", "auto"], fix="device=cpu or device=auto")
        self.name = name
        self.threads = threads
        self.dtype_name = dtype

    @property
    def torch_device(self) -> torch.device:
        if self.name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.name)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.dtype_name]

    def activate(self) -> None:
        """Apply process-wide settings (thread count)."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def describe(self) -> str:
        return f"{self.torch_device.type} {self.dtype_name}" + (
            f" threads={self.threads}" if self.threads else "")
