"""Building plait's compiled extensions (the CPU kernels and the quantized ones) in one place:
once per machine, under the build lock that survives a killed build, with one warning and a
fallback to torch when the build fails."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from types import ModuleType

from plait.runtime.cache_dir import build_lock


def build_extension(name: str, sources: list[Path], out: Path, cflags: list[str]) -> ModuleType:
    """Compile `sources` into `out` (once per machine) and import the extension, holding the build
    lock (a build killed earlier left torch's lock file: removed there, never waited on). The
    one builder of plait's extensions (these kernels and `kernels.quant`)."""
    from torch.utils.cpp_extension import load

    with build_lock(out):
        if not any(out.glob("*.so")):
            print(f"plait: compiling {name} into {out} (once per machine, ~80 s on 2 cores)",
                  file=sys.stderr)  # fmt: skip
        return load(name=name, sources=[str(s) for s in sources], build_directory=str(out),
                    extra_cflags=cflags, extra_ldflags=["-fopenmp"], verbose=False)  # fmt: skip


def build_or_explain(
    name: str, sources: list[Path], out: Path, cflags: list[str], warning: str
) -> tuple[ModuleType | None, str | None]:
    """`build_extension`, or (None, why) with one RuntimeWarning (`warning` formatted with why)
    when the build or import fails: callers fall back to torch."""
    try:
        return build_extension(name, sources, out, cflags), None
    except Exception as e:  # noqa: BLE001 - any build/import failure means "fall back"
        why = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e) else ''}"
        warnings.warn(warning.format(why), RuntimeWarning, stacklevel=4)
        return None, why
