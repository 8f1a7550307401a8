"""Files: loading never unpickles (a crafted pickle runs nothing), and a crash mid-write keeps the old file."""
from __future__ import annotations

import os
import pathlib
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from reliability_helpers import dir_digest, state_snapshot

from attacks import Classifier
from attacks.checkpoint import CheckpointError, load_tensors, save_tensors

ROOT = Path(__file__).resolve().parents[1]


class _Evil:
    """Unpickling this object creates ``marker`` (stands for arbitrary code execution)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "PWNED"
    pt = tmp_path / "evil.pt"
    torch.save({"weight": _Evil(marker)}, pt)          # a zip archive with a pickle inside
    raw = pickle.dumps({"weight": _Evil(marker)}, protocol=2)  # a raw pickle (starts with 0x80)
    return marker, pt, raw


@pytest.fixture(scope="module")
def clf():
    torch.manual_seed(0)
    return Classifier.create("tiny_cnn", 10, in_chans=1)


def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, evil, clf):
    from advgan.attacker import AdvGAN, AdvGANConfig

    marker, pt, raw = evil
    # 1. loading the .pt directly
    with pytest.raises(CheckpointError, match=r"refusing to load evil.pt: pickle-based files .* can run arbitrary code"):
        load_tensors(pt)
    # 2. the same bytes renamed to model.safetensors inside a valid classifier directory
    d = tmp_path / "clf"
    clf.save(d)
    before = state_snapshot(clf)
    for payload in (pt.read_bytes(), raw):
        (d / "model.safetensors").write_bytes(payload)
        with pytest.raises(CheckpointError, match=r"pickle/zip archive, not safetensors; refusing to unpickle"):
            Classifier.load(d)
    # 3. the same inside an AdvGAN directory
    a = tmp_path / "atk"
    atk = AdvGAN(clf, AdvGANConfig(width=4))
    atk.save(a)
    (a / "weights.safetensors").write_bytes(raw)
    with pytest.raises(CheckpointError, match=r"refusing to unpickle"):
        AdvGAN.load(a, clf)
    # 4. a training checkpoint to resume from
    from advgan import data
    from advgan.training import train_classifier

    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "checkpoint.safetensors").write_bytes(pt.read_bytes())
    ds = data.ImageDataset(torch.rand(8, 1, 28, 28), torch.arange(8) % 10, 10, "rand")
    with pytest.raises(CheckpointError, match=r"refusing to unpickle"):
        train_classifier(Classifier.create("tiny_cnn", 10, in_chans=1), ds, epochs=1, out_dir=run, progress=False, device="cpu")
    assert not marker.exists(), "the crafted pickle ran code"
    from reliability_helpers import assert_same_state

    assert_same_state(before, clf)
    # the payload is live: torch's own safe loader refuses it, a full unpickle would have run it
    with pytest.raises(pickle.UnpicklingError):
        torch.load(pt, weights_only=True)
    assert not marker.exists()
    torch.load(pt, weights_only=False)
    assert marker.exists(), "control: unpickling the payload does create the marker"


def test_no_unsafe_loading_in_the_library():
    """No module of the library calls pickle/torch.load on files (except weights_only=True)."""
    offenders = []
    for pkg in ("attacks", "advgan", "defenses"):
        for f in (ROOT / pkg).rglob("*.py"):
            text = f.read_text(encoding="utf-8")
            for m in re.finditer(r"(pickle\.loads?\(|torch\.load\([^)]*\)|cloudpickle|dill\.load|joblib\.load)", text):
                if m.group(0).startswith("torch.load") and "weights_only=True" in m.group(0):
                    continue
                offenders.append(f"{f.relative_to(ROOT)}: {m.group(0)}")
    assert not offenders, offenders


# ---------------------------------------------------------------------- atomic writes
def _save_twice_failing(monkeypatch, tmp_path, clf, failing: str):
    d = tmp_path / "clf"
    clf.save(d)
    digest = dir_digest(d)
    other = Classifier.create("tiny_cnn", 10, in_chans=1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)

    def boom(*a, **k):
        raise OSError(28, "No space left on device (simulated)")

    import attacks.checkpoint as ck

    monkeypatch.setattr(ck.os, failing, boom)
    with pytest.raises(OSError, match="simulated"):
        other.save(d)
    monkeypatch.undo()
    assert dir_digest(d) == digest, "the previous checkpoint was modified or temp files were left behind"
    loaded = Classifier.load(d)
    for (k, v), w in zip(clf.module.state_dict().items(), loaded.module.state_dict().values()):
        assert torch.equal(v, w), k


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_crash_mid_write_keeps_previous_classifier(monkeypatch, tmp_path, clf, failing):
    _save_twice_failing(monkeypatch, tmp_path, clf, failing)


def test_crash_mid_write_of_the_data(monkeypatch, tmp_path):
    """The write itself fails halfway (disk full after some bytes): target untouched, no temp file left."""
    target = tmp_path / "t.safetensors"
    save_tensors(target, {"a": torch.arange(1000.0)})
    digest = dir_digest(tmp_path)
    real_fdopen = os.fdopen

    class HalfFile:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError(28, "No space left on device (simulated)")

        def __getattr__(self, k):
            return getattr(self.f, k)

    import attacks.checkpoint as ck

    monkeypatch.setattr(ck.os, "fdopen", lambda fd, mode: HalfFile(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="simulated"):
        save_tensors(target, {"a": torch.zeros(1000)})
    monkeypatch.undo()
    assert dir_digest(tmp_path) == digest
    assert torch.equal(load_tensors(target)["a"], torch.arange(1000.0))


def test_engine_checkpoint_survives_a_failed_save(monkeypatch, tmp_path):
    """A failing rename while the trainer writes its next checkpoint leaves the last one loadable and resumable."""
    from advgan import data
    from advgan.training import ClassifierConfig, train_classifier

    ds = data.ImageDataset(torch.rand(64, 1, 28, 28), torch.arange(64) % 10, 10, "rand")
    cfg = ClassifierConfig(batch_size=16, checkpoint_every=2, progress=False, device="cpu")
    run = tmp_path / "run"
    import attacks.checkpoint as ck

    real_replace, calls = os.replace, {"n": 0}

    def replace_then_fail(src, dst):
        if str(dst).endswith("checkpoint.safetensors"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(5, "I/O error (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", replace_then_fail)
    torch.manual_seed(0)
    with pytest.raises(OSError, match="simulated"):
        train_classifier(Classifier.create("tiny_cnn", 10, in_chans=1), ds, config=cfg, epochs=1, out_dir=run)
    monkeypatch.undo()
    ck_file = run / "checkpoint" / "checkpoint.safetensors"
    assert sorted(p.name for p in (run / "checkpoint").iterdir() if p.name.startswith(".")) == []
    first = load_tensors(ck_file)
    import json

    from safetensors import safe_open

    with safe_open(str(ck_file), framework="pt") as f:
        assert json.loads(f.metadata()["json"])["state"]["step"] == 2
    # resuming from it reaches the same weights as an uninterrupted run
    torch.manual_seed(0)
    resumed, _ = train_classifier(Classifier.create("tiny_cnn", 10, in_chans=1), ds, config=cfg, epochs=1, out_dir=run)
    torch.manual_seed(0)
    straight, _ = train_classifier(Classifier.create("tiny_cnn", 10, in_chans=1), ds, config=cfg, epochs=1, out_dir=tmp_path / "s")
    assert first  # the kept checkpoint was readable
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k


_WRITER = textwrap.dedent("""
    import sys, torch
    from attacks.checkpoint import save_tensors
    path = sys.argv[1]
    i = 1
    print("ready", flush=True)
    while True:
        save_tensors(path, {"v": torch.full((2_000_000,), float(i))}, {"i": str(i)})
        i += 1
""")


def test_sigkill_during_writes_never_leaves_a_torn_file(tmp_path):
    """A process rewriting an 8 MB checkpoint in a loop is SIGKILLed at random moments: the file is always whole."""
    import random

    target = tmp_path / "c.safetensors"
    save_tensors(target, {"v": torch.zeros(2_000_000)}, {"i": "0"})
    rng = random.Random(0)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for _ in range(2):
        p = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, env=env, cwd=ROOT)
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.2, 1.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        t = load_tensors(target)["v"]
        assert t.numel() == 2_000_000 and bool((t == t[0]).all()), "a torn checkpoint"
        assert float(t[0]) >= 1, "the writer never completed a write before the kill"
    # a killed writer may leave its hidden temp file; it never replaces or shadows the checkpoint
    leftovers = [q.name for q in tmp_path.iterdir() if q.name != "c.safetensors"]
    assert all(q.startswith(".c.safetensors.") and q.endswith(".tmp") for q in leftovers), leftovers
