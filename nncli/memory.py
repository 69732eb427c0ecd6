"""How much memory a device has free, for the guards that refuse work which cannot fit
(``gradcheck`` in float64, ``train`` before its first step). psutil is not a dependency:
/proc/meminfo's MemAvailable on Linux, sysconf elsewhere, ``torch.cuda.mem_get_info`` on CUDA.
"""

from __future__ import annotations

import os


def available_memory(device) -> int | None:
    """Free memory on ``device`` (a torch.device) in bytes (CPU: MemAvailable), or None when unknown."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
