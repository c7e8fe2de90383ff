"""The machine a process runs on: its CPU flags, whether it computes bfloat16 natively, what a run records of it.

Bottom layer (no project imports): training picks its precision from it, inference its SR engine.
"""

from __future__ import annotations

from pathlib import Path

_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo_field(name: str, cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The first `name: value` of /proc/cpuinfo (None where it is missing or unreadable)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(name)), None)


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags of this machine (empty where /proc/cpuinfo is unreadable)."""
    return set((_cpuinfo_field("flags", cpuinfo) or "").split())


def machine_summary() -> dict:
    """What a run records of the machine it trained on: cores, processor, bf16 support, Python."""
    import os
    import platform

    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return {
        "cpus": len(usable),  # the cores this process may run on (taskset pins a job to fewer than the machine's)
        "machine_cpus": os.cpu_count(),
        "processor": _cpuinfo_field("model name") or platform.processor() or platform.machine(),
        "avx512_bf16": "avx512_bf16" in cpu_flags(),
        "python": platform.python_version(),
    }


def has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def native_bfloat16(*, flags: set[str] | None = None, gpu: bool | None = None) -> bool:
    """True on a GPU or a CPU with avx512_bf16 / AMX, where bfloat16 is a measured speed-up (BENCHMARKS.md)."""
    gpu = has_gpu() if gpu is None else gpu
    flags = cpu_flags() if flags is None else flags
    return gpu or any(f in flags for f in _BF16_CPU_FLAGS)
