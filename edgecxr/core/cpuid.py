"""The x86 CPUID instruction, executed in-process: the INT8 features the backends' own kernel
dispatchers (oneDNN, MLAS) will see.

/proc/cpuinfo describes the host kernel's CPU, which is not always what a process runs on:
under an emulator (`qemu-x86_64 -cpu Haswell`) or a hypervisor that masks features, only
CPUID tells the truth. Used by `edgecxr.core.sysinfo`; imports nothing of edgecxr.
"""

from __future__ import annotations

import ctypes
import mmap
import platform

# push rbx; mov eax,edi; mov ecx,esi; mov r8,rdx; cpuid;
# mov [r8],eax; mov [r8+4],ebx; mov [r8+8],ecx; mov [r8+12],edx; pop rbx; ret
_CODE = bytes.fromhex("53 89f8 89f1 4989d0 0fa2 418900 41895804 41894808 4189500c 5b c3")

# feature -> (leaf, subleaf, register index eax=0 ebx=1 ecx=2 edx=3, bit)
_BITS = {
    "avx2": (7, 0, 1, 5),
    "avx512f": (7, 0, 1, 16),
    "avx512_vnni": (7, 0, 2, 11),
    "avx_vnni": (7, 1, 0, 4),
    "amx_bf16": (7, 0, 3, 22),
    "amx_tile": (7, 0, 3, 24),
    "amx_int8": (7, 0, 3, 25),
}

_function = None


def _load():
    """The CPUID stub as a C function, or None where code cannot be mapped executable."""
    global _function
    if _function is not None or platform.machine().lower() not in ("x86_64", "amd64"):
        return _function
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        addr = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE,
                         mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            return None
        ctypes.memmove(addr, _CODE, len(_CODE))
        if libc.mprotect(addr, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_EXEC) != 0:
            return None  # a hardened kernel refusing executable mappings: fall back to /proc/cpuinfo
        _function = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32,
                                     ctypes.POINTER(ctypes.c_uint32 * 4))(addr)
    except (OSError, AttributeError, ValueError):
        return None
    return _function


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int] | None:
    function = _load()
    if function is None:
        return None
    regs = (ctypes.c_uint32 * 4)()
    function(leaf, subleaf, ctypes.byref(regs))
    return tuple(regs)


def int8_features() -> dict[str, bool] | None:
    """The INT8-relevant features as CPUID reports them, or None off x86 or without CPUID."""
    top = cpuid(0)
    if top is None:
        return None
    features = {}
    for name, (leaf, subleaf, reg, bit) in _BITS.items():
        regs = cpuid(leaf, subleaf) if leaf <= top[0] else None
        features[name] = bool(regs and regs[reg] >> bit & 1)
    return features


def brand() -> str | None:
    """The processor brand string (leaves 0x80000002-4): under qemu, the CPU model it emulates."""
    top = cpuid(0x80000000)
    if top is None or top[0] < 0x80000004:
        return None
    raw = b"".join(int(r).to_bytes(4, "little") for leaf in range(0x80000002, 0x80000005) for r in cpuid(leaf) or ())
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip() or None
