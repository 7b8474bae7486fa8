"""A kernel build killed at any moment leaves the next build working (plait.runtime.cache_dir)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

from plait.runtime.cache_dir import BUILD_LOCK, TORCH_LOCK, build_lock

_HOLDER = f"""
import fcntl, pathlib, sys, time
d = pathlib.Path(sys.argv[1])
f = open(d / "{BUILD_LOCK}", "a")
fcntl.flock(f, fcntl.LOCK_EX)
(d / "{TORCH_LOCK}").touch()  # what torch's FileBaton does at the start of a build
print("holding", flush=True)
time.sleep(60)
"""


def _holder(directory):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(directory)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "holding\n"
    return proc


def test_a_killed_builders_lock_is_removed(tmp_path, capsys):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)  # the build dies mid-way: torch's lock stays
    proc.wait()
    assert (tmp_path / TORCH_LOCK).exists()
    with build_lock(tmp_path):
        assert not (tmp_path / TORCH_LOCK).exists()  # torch would have waited on it forever
    assert "left by a kernel build that was killed" in capsys.readouterr().err


def test_a_live_builder_is_waited_for_and_its_lock_kept(tmp_path, capsys):
    proc = _holder(tmp_path)
    entered = threading.Event()

    def build():
        with build_lock(tmp_path):
            entered.set()

    t = threading.Thread(target=build)
    t.start()
    time.sleep(0.5)
    assert not entered.is_set() and (tmp_path / TORCH_LOCK).exists()  # the live build is kept
    (tmp_path / TORCH_LOCK).unlink()  # the holder finishes its build normally ...
    proc.kill()  # ... and exits
    proc.wait()
    t.join(10)
    assert entered.is_set()
    err = capsys.readouterr().err
    assert "waiting for another process" in err and "killed" not in err


def test_both_extensions_build_through_the_lock(tmp_path, monkeypatch, capsys):
    """`kernels.build.build_extension` (the one builder: plait's kernels and the quantized ones) holds
    the build lock, so a killed build's lock is removed before torch would wait on it."""
    import torch.utils.cpp_extension as cpp

    from plait.runtime.kernels import quant
    from plait.runtime.kernels.build import build_extension

    seen = []

    def fake_load(name, sources, build_directory, **kw):
        seen.append((name, (tmp_path / TORCH_LOCK).exists()))
        return object()

    monkeypatch.setattr(cpp, "load", fake_load)
    (tmp_path / TORCH_LOCK).touch()  # left by a killed build
    build_extension("plait_cpu_kernels", [], tmp_path, [])
    (tmp_path / TORCH_LOCK).touch()
    monkeypatch.setattr(quant, "build_dir", lambda: tmp_path)
    monkeypatch.setattr(quant, "cpu_supported", lambda: (True, ""))
    monkeypatch.setattr(quant, "_module", None)
    monkeypatch.setattr(quant, "_failed", None)
    assert quant._load() is not None
    assert seen == [("plait_cpu_kernels", False), ("plait_quant_kernels", False)]
    assert capsys.readouterr().err.count("left by a kernel build that was killed") == 2
