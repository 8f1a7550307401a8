"""Reliability round 2 — runs and CLI: nothing lost (inputs, locks, devices, file modes), resumes that
would be silently wrong refused, every path and name checked before work, no traceback from the CLI.

Each refusal asserts the error type / exit status, the message, and that nothing changed (weights,
files' bytes and modes). CLI cases call ``advgan.cli.main`` in-process; one SIGINT case uses a subprocess.
"""
from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from reliability_helpers import dir_digest, unchanged

from advgan import data
from advgan.attacker import AdvGAN, AdvGANConfig, BlackBox, BlackBoxAdvGAN
from advgan.engine.rundir import LOCK, RunDirError, RunLock, RunLockedError
from advgan.engine.trainer import TrainingInterrupted
from advgan.training import train_classifier
from attacks import FGSM, Classifier, evaluate
from attacks.checkpoint import CheckpointError, load_tensors, save_json

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- helpers and fixtures
def modes(path: Path) -> dict[str, int]:
    """{relative path: permission bits} of every entry under ``path``."""
    return {str(p.relative_to(path)): stat.S_IMODE(p.stat().st_mode) for p in sorted(path.rglob("*"))} if path.exists() else {}


class same_files:  # noqa: N801 - used as a context manager like ``unchanged``
    """Bytes and modes of every file under ``dirs`` are the same on exit."""

    def __init__(self, *dirs: Path) -> None:
        self.dirs = dirs

    def __enter__(self) -> None:
        self.before = [(dir_digest(d), modes(d)) for d in self.dirs]

    def __exit__(self, *exc: object) -> None:
        after = [(dir_digest(d), modes(d)) for d in self.dirs]
        assert after == self.before, "files (bytes or modes) changed"


def cli(argv, capsys) -> tuple[int, str]:
    from advgan.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return int(code), err


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    return lines[0]


@pytest.fixture(scope="module")
def small(mnist):
    """Two disjoint 64-image MNIST-5k training sets and a 96-image one."""
    train, _ = mnist
    return train.subset(64, seed=0), train.subset(64, seed=1), train.subset(96, seed=2)


@pytest.fixture(scope="module")
def clf_dir(trained_tiny_clf, tmp_path_factory):
    d = tmp_path_factory.mktemp("r2") / "clf"
    trained_tiny_clf.save(d)
    return d


def tiny_clf(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier.create("tiny_cnn", 10, in_chans=1)


def no_data_load(monkeypatch):
    """Make loading any dataset fail loudly: a refusal must come before any work."""
    def boom(*a, **k):
        raise AssertionError("data was loaded before the refusal")

    monkeypatch.setattr(data, "load", boom)


def atk_cfg(**kw) -> AdvGANConfig:
    return AdvGANConfig(**{"width": 4, "progress": False, "device": "cpu", "batch_size": 32, **kw})


# ====================================================================== 2. never lose data
@pytest.mark.parametrize("argv, msg", [
    (["train-attacker", "--classifier", "{c}", "--out", "{c}"], r"--out .*clf is the same directory as --classifier"),
    (["train-attacker", "--classifier", "{c}", "--out", "{c}/attacker"], r"--out .*clf/attacker is inside --classifier"),
    (["finetune", "--classifier", "{c}", "--source", "pgd", "--out", "{c}"], r"is the same directory as --classifier"),
    (["finetune", "--classifier", "{link}", "--source", "pgd", "--out", "{c}/ft"], r"is inside --classifier .*link"),
    (["finetune", "--classifier", "{c}", "--source", "advgan:{t}/atk", "--out", "{t}/atk"],
     r"is the same directory as --source advgan:"),
    (["evaluate", "--classifier", "{c}", "--attack", "fgsm", "--out", "{c}/report"], r"is inside --classifier"),
    (["finetune", "--classifier", "{t}/runs/clf", "--source", "pgd", "--out", "{t}/runs"],
     r"--classifier .*runs/clf is inside --out"),
], ids=["attacker-equal", "attacker-inside", "finetune-equal", "finetune-symlink", "finetune-advgan-source",
        "evaluate-inside", "out-around-input"])
def test_out_that_would_overwrite_an_input_is_refused(argv, msg, clf_dir, tmp_path, capsys, monkeypatch):
    import shutil

    (tmp_path / "link").symlink_to(clf_dir, target_is_directory=True)
    (tmp_path / "atk").mkdir()
    shutil.copytree(clf_dir, tmp_path / "runs" / "clf")
    argv = [a.format(c=clf_dir, t=tmp_path, link=tmp_path / "link") for a in argv]
    no_data_load(monkeypatch)
    with same_files(clf_dir, tmp_path):
        code, err = cli(argv, capsys)
    assert code == 2
    assert re.search(msg, one_line(err)), err
    assert not (clf_dir / "attacker").exists() and not (clf_dir / "ft").exists() and not (clf_dir / "report").exists()


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_second_run_on_the_same_out_gets_a_clear_error(clf_dir, tmp_path, capsys, monkeypatch, small):
    import socket

    out = tmp_path / "out"
    out.mkdir()
    other = _sleeper()  # a live process holding the lock, as a first run would
    try:
        (out / LOCK).write_text(f"{other.pid}\n{socket.gethostname()}\n")
        no_data_load(monkeypatch)
        with same_files(tmp_path, clf_dir):
            code, err = cli(["train-attacker", "--classifier", clf_dir, "--out", out], capsys)
            assert code == 2
            assert re.search(rf"another run is writing to --out .*out \(pid {other.pid} on .*lock file .*\.advgan\.lock\)",
                             one_line(err)), err
            # the library too: the engine takes the same lock
            clf = tiny_clf()
            with unchanged(models=[clf]), pytest.raises(RunLockedError, match=r"another run is writing to out_dir"):
                AdvGAN(clf, atk_cfg()).fit(small[0], 1, out_dir=out)
    finally:
        other.kill()
        other.wait()


def test_concurrent_runs_in_two_processes(tmp_path):
    """A real second process: it waits for nothing and fails at once while the first holds the lock."""
    out = tmp_path / "out"
    # rundir.py needs no torch: load the file alone so the second process starts in a blink
    code = ("import importlib.util as u, sys, time\n"
            "spec = u.spec_from_file_location('rundir', sys.argv[3]); m = u.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "l = m.RunLock(sys.argv[1]); l.acquire(); print('held', flush=True); time.sleep(float(sys.argv[2])); l.release()")
    first = subprocess.Popen([sys.executable, "-c", code, str(out), "60", str(ROOT / "advgan" / "engine" / "rundir.py")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"pid {first.pid}"):
            RunLock(out).acquire()
        assert (out / LOCK).read_text().split("\n")[0] == str(first.pid)  # the first run's lock is untouched
    finally:
        first.kill()
        first.wait()
    # the first run died without releasing: its lock is stale and taken over with a warning, removed at exit
    with pytest.warns(RuntimeWarning, match=rf"taking over the stale lock of process {first.pid}"):
        with RunLock(out):
            assert (out / LOCK).read_text().split("\n")[0] == str(os.getpid())
    assert not (out / LOCK).exists()


def test_stale_lock_is_taken_over_and_the_lock_is_released_on_failure(tmp_path, small):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / LOCK).write_text(f"{dead.pid}\n{os.uname().nodename}\n")
    clf = tiny_clf()
    with pytest.warns(RuntimeWarning, match=rf"stale lock of process {dead.pid}"):
        train_classifier(clf, small[0], epochs=1, out_dir=run, progress=False, device="cpu", batch_size=32)
    assert not list(run.rglob(LOCK))
    assert (run / "checkpoint" / "checkpoint.safetensors").is_file()
    # a run that fails leaves no lock behind, and no folder it created for nothing
    bad = data.ImageDataset(small[0].images * 255, small[0].labels, 10, "x255")
    with pytest.raises(ValueError):
        train_classifier(tiny_clf(), bad, epochs=1, out_dir=tmp_path / "new", progress=False, device="cpu")
    assert not (tmp_path / "new").exists()


def test_meta_device_is_refused_before_anything_moves(trained_tiny_clf, small, tmp_path):
    clf = trained_tiny_clf
    loader = data.loader(small[0], 32)
    with unchanged(models=[clf], dirs=[tmp_path]):
        with pytest.raises(ValueError, match=r"device 'meta' holds no data"):
            evaluate(clf, loader, attacks={"fgsm": FGSM(eps=0.1)}, progress=False, device="meta")
        with pytest.raises(ValueError, match=r"device 'meta' holds no data"):
            AdvGAN(clf, atk_cfg(device="meta")).fit(small[0], 1, out_dir=tmp_path / "a")
        for dev in ("mps", "cuda", "cuda:3", "xpu"):
            if dev.startswith("cuda") and torch.cuda.is_available():
                continue
            with pytest.raises(ValueError, match=r"not available"):
                evaluate(clf, loader, attacks={"fgsm": FGSM(eps=0.1)}, progress=False, device=dev)
    assert all(p.device.type == "cpu" for p in clf.parameters())


def _half_way_move(monkeypatch, model: torch.nn.Module) -> None:
    """``model.to(meta)`` moves its first child, then fails (as an out-of-memory error half-way would)."""
    real_to = torch.nn.Module.to

    def to(self, *args, **kwargs):
        if self is model and args and str(args[0]) == "meta":
            real_to(next(iter(model.children())), *args, **kwargs)
            raise RuntimeError("CUDA out of memory (simulated, half-way through the move)")
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)


def test_failed_device_move_in_evaluate_restores_the_model(trained_tiny_clf, small, monkeypatch):
    ev = sys.modules["attacks.evaluate"]  # (the package exports a function of the same name)
    clf = trained_tiny_clf
    loader = data.loader(small[0], 32)
    monkeypatch.setattr(ev, "resolve_device", lambda d: torch.device("meta"))  # a device where the model loses its data
    with unchanged(models=[clf]):
        with pytest.raises(Exception):  # noqa: B017 - whatever fails on the device, the model must come back
            evaluate(clf, loader, attacks={"fgsm": FGSM(eps=0.1)}, progress=False, device="x")
        _half_way_move(monkeypatch, clf)
        with pytest.raises(RuntimeError, match=r"half-way"):
            evaluate(clf, loader, attacks={"fgsm": FGSM(eps=0.1)}, progress=False, device="x")
    assert all(p.device.type == "cpu" for p in clf.parameters())


def test_failed_device_move_in_advgan_restores_the_target(trained_tiny_clf, small, tmp_path, monkeypatch):
    import advgan.engine.trainer as tr

    clf = trained_tiny_clf
    monkeypatch.setattr(tr, "resolve_device", lambda d: torch.device("meta"))
    with unchanged(models=[clf]):
        with pytest.raises(Exception):  # noqa: B017 - training on a data-less device fails somewhere; the target comes back
            AdvGAN(clf, atk_cfg()).fit(small[0], 1)
        _half_way_move(monkeypatch, clf)
        with pytest.raises(RuntimeError, match=r"half-way"):
            AdvGAN(clf, atk_cfg()).fit(small[0], 1, out_dir=tmp_path / "a")
    assert all(p.device.type == "cpu" for p in clf.parameters())
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("umask, new_mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(umask, new_mode, tmp_path, trained_tiny_clf):
    old = os.umask(umask)
    try:
        save_json(tmp_path / "new.json", {"a": 1})
        trained_tiny_clf.save(tmp_path / "clf")
        kept = tmp_path / "kept.json"
        kept.write_text("{}")
        os.chmod(kept, 0o640)
        save_json(kept, {"b": 2})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == new_mode
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "clf").iterdir()} == {new_mode}
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text().strip().endswith("}")
    assert not list(tmp_path.glob(".*.tmp"))


# ====================================================================== 3. no silently wrong resumes; --seed
def test_resume_on_other_data_is_refused_naming_the_field(small, tmp_path):
    a, b, longer = small
    run = tmp_path / "run"
    kw = dict(progress=False, device="cpu", batch_size=32)
    train_classifier(tiny_clf(), a, epochs=1, out_dir=run, **kw)
    clf = tiny_clf()
    n = len(a)
    with same_files(run), unchanged(models=[clf]):
        with pytest.raises(CheckpointError, match=rf"was trained on other data \(dataset length: checkpoint {n} vs now {len(longer)}\)"):
            train_classifier(clf, data.ImageDataset(longer.images, longer.labels, 10, a.name), epochs=2, out_dir=run, **kw)
        with pytest.raises(CheckpointError, match=r"other data \((labels|sample contents): checkpoint '[0-9a-f]+' vs now"):
            train_classifier(clf, data.ImageDataset(b.images, b.labels, 10, a.name), epochs=2, out_dir=run, **kw)
        with pytest.raises(CheckpointError, match=rf"dataset name: checkpoint '{re.escape(a.name)}' vs now 'digits'"):
            train_classifier(clf, data.ImageDataset(a.images, a.labels, 10, "digits"), epochs=2, out_dir=run, **kw)
    # the same data resumes
    train_classifier(tiny_clf(), a, epochs=2, out_dir=run, **kw)


def test_resume_against_another_target_is_refused(small, tmp_path, trained_tiny_clf):
    run = tmp_path / "atk"
    AdvGAN(trained_tiny_clf, atk_cfg()).fit(small[0], 1, out_dir=run)
    other = tiny_clf(5)
    with same_files(run), pytest.raises(CheckpointError, match=r"trained against another model \(fixed_models"):
        AdvGAN(other, atk_cfg()).fit(small[0], 2, out_dir=run)


def test_cli_resume_on_another_dataset_is_refused(tmp_path, capsys):
    def argv(epochs: int, dataset: str) -> list:
        return ["train-classifier", "--model", "tiny_cnn", "--epochs", epochs, "--device", "cpu", "--no-progress",
                "--dataset", dataset, "--out", tmp_path / "clf"]

    assert cli(argv(1, "digits"), capsys)[0] == 0
    with same_files(tmp_path):
        code, err = cli(argv(2, "mnist5k"), capsys)
    assert code == 2
    assert re.search(r"was trained on other data \(dataset name: checkpoint 'digits-train' vs now 'mnist5k-train'\)",
                     one_line(err)), err


def test_cli_seed_is_repeatable(tmp_path, capsys):
    def run(seed: int, name: str) -> dict[str, torch.Tensor]:
        torch.manual_seed(1234 + seed)  # whatever the caller's RNG state, the run depends on --seed only
        torch.rand(7)
        code, _ = cli(["train-classifier", "--model", "tiny_cnn", "--dataset", "digits", "--epochs", "1", "--device", "cpu",
                       "--no-progress", "--seed", seed, "--out", tmp_path / name], capsys)
        assert code == 0
        return load_tensors(tmp_path / name / "model.safetensors")

    a, b, c = run(3, "a"), run(3, "b"), run(4, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


# ====================================================================== 4. check before work
@pytest.mark.parametrize("case, msg", [
    ("file", r"--out .*out is a file, not a directory"),
    ("under_file", r"--out .*out/run sits under .*out, which is a file"),
    ("read_only", r"--out .*ro/run would be created in .*ro, which is read-only \(mode dr-xr-xr-x\)"),
    ("ckpt_dir", r"--out .*out: checkpoint(/checkpoint)?\.safetensors is a directory, but the run writes a file there"),
], ids=["file", "under_file", "read_only", "checkpoint_is_a_dir"])
@pytest.mark.parametrize("command", ["train-classifier", "train-attacker", "finetune"])
def test_unusable_out_is_refused_before_any_work(case, msg, command, clf_dir, tmp_path, capsys, monkeypatch):
    out = {"file": "out", "under_file": "out/run", "read_only": "ro/run", "ckpt_dir": "out"}[case]
    if case in ("file", "under_file"):
        (tmp_path / "out").write_bytes(b"precious")
    elif case == "read_only":
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o555)
    else:
        (tmp_path / "out" / "checkpoint.safetensors").mkdir(parents=True)
    extra = {"train-classifier": ["--model", "tiny_cnn"], "train-attacker": ["--classifier", clf_dir],
             "finetune": ["--classifier", clf_dir, "--source", "pgd"]}[command]
    no_data_load(monkeypatch)
    try:
        with same_files(tmp_path):
            code, err = cli([command, *extra, "--out", tmp_path / out], capsys)
    finally:
        os.chmod(tmp_path / "ro", 0o755) if (tmp_path / "ro").exists() else None
    assert code == 2
    assert re.search(msg, one_line(err)), err


def test_library_refuses_unusable_out_dirs_before_training(small, tmp_path, trained_tiny_clf):
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "run" / "checkpoint" / "checkpoint.safetensors").mkdir(parents=True)
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    clf = tiny_clf()
    try:
        with unchanged(models=[clf, trained_tiny_clf]), same_files(tmp_path):
            with pytest.raises(RunDirError, match=r"out_dir .*f is a file"):
                train_classifier(clf, small[0], epochs=1, out_dir=tmp_path / "f", progress=False, device="cpu")
            with pytest.raises(RunDirError, match=r"is a directory, but the run writes a file there"):
                train_classifier(clf, small[0], epochs=1, out_dir=tmp_path / "run", progress=False, device="cpu")
            with pytest.raises(RunDirError, match=r"read-only"):
                AdvGAN(trained_tiny_clf, atk_cfg()).fit(small[0], 1, out_dir=tmp_path / "ro" / "a")
            with pytest.raises(CheckpointError, match=r"is a directory, not a safetensors file"):
                load_tensors(tmp_path / "run" / "checkpoint" / "checkpoint.safetensors")
    finally:
        os.chmod(tmp_path / "ro", 0o755)


def test_wrong_surrogate_is_found_before_any_query(small, tmp_path, trained_tiny_clf, clf_dir, capsys, monkeypatch):
    bb = BlackBox(trained_tiny_clf)
    (tmp_path / "f").write_bytes(b"x")
    with unchanged(models=[trained_tiny_clf], dirs=[tmp_path]):
        with pytest.raises(ValueError, match=r"surrogate: unknown model 'small_cnnn'.*small_cnn"):
            BlackBoxAdvGAN(bb, atk_cfg(), surrogate="small_cnnn").fit(small[0], 1, out_dir=tmp_path / "bb")
        with pytest.raises(RunDirError, match=r"is a file"):
            BlackBoxAdvGAN(bb, atk_cfg()).fit(small[0], 1, out_dir=tmp_path / "f")
    assert bb.queries == 0
    no_data_load(monkeypatch)
    code, err = cli(["train-attacker", "--classifier", clf_dir, "--black-box", "static", "--surrogate", "resnet_18",
                     "--out", tmp_path / "o"], capsys)
    assert code == 2 and re.search(r"--surrogate: unknown model 'resnet_18'", one_line(err)), err
    assert not (tmp_path / "bb").exists()
    assert not (tmp_path / "o").exists()


def test_black_box_resume_of_a_white_box_run_is_refused_before_queries(small, tmp_path, trained_tiny_clf):
    run = tmp_path / "run"
    AdvGAN(trained_tiny_clf, atk_cfg()).fit(small[0], 1, out_dir=run)
    bb = BlackBox(trained_tiny_clf)
    with same_files(run), pytest.raises(CheckpointError, match=r"without a black-box surrogate \(a white-box run\?\)"):
        BlackBoxAdvGAN(bb, atk_cfg(), surrogate_epochs=1).fit(small[0], 2, out_dir=run)
    assert bb.queries == 0


@pytest.mark.parametrize("argv, msg", [
    (["train-classifier", "--model", "tiny_cnnn", "--out", "{t}/o"], r"--model: unknown model 'tiny_cnnn'"),
    (["train-classifier", "--dataset", "mnist_5k", "--out", "{t}/o"], r"--dataset: unknown dataset 'mnist_5k'; valid names"),
    (["finetune", "--classifier", "{c}", "--dataset", "cifar", "--source", "pgd", "--out", "{t}/o"], r"unknown dataset 'cifar'"),
], ids=["model", "dataset", "finetune-dataset"])
def test_unknown_names_before_any_work(argv, msg, tmp_path, clf_dir, capsys, monkeypatch):
    no_data_load(monkeypatch)
    code, err = cli([a.format(t=tmp_path, c=clf_dir) for a in argv], capsys)
    assert code == 2 and re.search(msg, one_line(err)), err
    assert not (tmp_path / "o").exists()


# ====================================================================== 6. no traceback from the CLI
@pytest.mark.parametrize("exc, code, msg", [
    (ValueError("bad value"), 2, r"error: bad value$"),
    (TypeError("bad type"), 2, r"error: bad type$"),
    (FileNotFoundError(2, "No such file or directory", "/x/y.png"), 2, r"No such file or directory: '?/x/y.png"),
    (PermissionError(13, "Permission denied", "/root/z"), 2, r"Permission denied"),
    (KeyError("num_classes"), 2, r"missing key 'num_classes'"),
    (ImportError("No module named 'foolbox'"), 2, r"No module named 'foolbox'"),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied\n(4x3 and 5x6)"), 1,
     r"RuntimeError: mat1 and mat2 shapes cannot be multiplied \(4x3 and 5x6\) \(unexpected; re-run with ADVGAN_TRACEBACK=1"),
], ids=["value", "type", "file_not_found", "permission", "key", "import", "runtime"])
def test_library_errors_become_one_line(exc, code, msg, tmp_path, capsys, monkeypatch):
    import advgan.cli.cmd_train_classifier as cmd

    def fail(args):
        raise exc

    monkeypatch.setattr(cmd, "run", fail)
    got, err = cli(["train-classifier", "--out", tmp_path / "o"], capsys)
    assert got == code
    assert re.search(msg, one_line(err)), err
    assert one_line(err).startswith("advgan train-classifier: error: ")
    assert not (tmp_path / "o").exists()  # the folder created for the lock is removed again


@pytest.mark.parametrize("device, msg", [
    ("meta", r"device 'meta' holds no data"),
    ("mps", r"device 'mps' requested but Apple MPS is not available"),
    ("cuda", r"device 'cuda' requested but CUDA is not available"),
    ("cuda:5", r"device 'cuda:5' requested but"),
    ("gpu", r"unknown device 'gpu'"),
])
def test_device_flags_one_line_exit_2(device, msg, tmp_path, clf_dir, capsys, monkeypatch):
    if device.startswith("cuda") and torch.cuda.is_available() and device != "cuda:5":
        pytest.skip("CUDA is available here")
    no_data_load(monkeypatch)
    for argv in (["train-classifier", "--model", "tiny_cnn"], ["evaluate", "--classifier", clf_dir, "--attack", "fgsm"]):
        code, err = cli([*argv, "--device", device, "--out", tmp_path / "o"], capsys)
        assert code == 2 and re.search(msg, one_line(err)), err
    assert not (tmp_path / "o").exists()


def test_offline_pretrained_says_so_at_once(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants as hub

    import advgan.netcheck as net

    monkeypatch.setattr(net, "unreachable", lambda url, **k: "huggingface.co:443 is unreachable (simulated)")
    seen = {}

    def create(name, num_classes, **kw):
        seen["offline"] = hub.HF_HUB_OFFLINE  # cache only: no minute of retries
        raise OSError("cannot find the requested files in the local cache")

    monkeypatch.setattr(Classifier, "create", staticmethod(create))
    before = hub.HF_HUB_OFFLINE
    t0 = time.perf_counter()
    code, err = cli(["train-classifier", "--model", "resnet18", "--pretrained", "--dataset", "digits", "--out", tmp_path / "o"],
                    capsys)
    assert code == 2 and time.perf_counter() - t0 < 30
    assert re.search(r"cannot download the pretrained weights of 'resnet18': this machine looks offline .*simulated.*"
                     r"train without --pretrained", one_line(err)), err
    assert seen["offline"] is True and hub.HF_HUB_OFFLINE == before
    assert not (tmp_path / "o").exists()


def test_offline_dataset_download_fails_at_once(tmp_path, capsys, monkeypatch):
    import advgan.netcheck as net

    monkeypatch.setattr(net, "unreachable", lambda url, **k: f"{url} is unreachable (simulated)")
    t0 = time.perf_counter()
    with pytest.raises(net.OfflineError, match=r"cannot download torchvision MNIST into .*looks offline .*mnist5k"):
        data.load("mnist", root=tmp_path / "tv")
    assert time.perf_counter() - t0 < 10
    code, err = cli(["train-classifier", "--model", "tiny_cnn", "--dataset", "cifar10", "--data-root", tmp_path / "tv",
                     "--out", tmp_path / "o"], capsys)
    assert code == 2 and re.search(r"cannot download torchvision CIFAR10 .*looks offline", one_line(err)), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("damage, msg", [
    ("config_not_json", r"config.json is not valid JSON"),
    ("config_a_list", r"must hold a JSON object"),
    ("weights_garbage", r"not a valid safetensors file"),
    ("weights_a_dir", r"is a directory"),
    ("classifier_a_file", r"does not exist|not a directory"),
])
def test_malformed_files_one_line_exit_2(damage, msg, clf_dir, tmp_path, capsys):
    import shutil

    d = tmp_path / "clf"
    shutil.copytree(clf_dir, d)
    if damage == "config_not_json":
        (d / "config.json").write_text("{not json")
    elif damage == "config_a_list":
        (d / "config.json").write_text("[1, 2]")
    elif damage == "weights_garbage":
        (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    elif damage == "weights_a_dir":
        (d / "model.safetensors").unlink()
        (d / "model.safetensors").mkdir()
    else:
        shutil.rmtree(d)
        d.write_bytes(b"not a dir")
    with same_files(tmp_path):
        code, err = cli(["evaluate", "--classifier", d, "--attack", "fgsm", "--out", tmp_path / "o"], capsys)
    assert code == 2 and re.search(msg, one_line(err)), err


def _interrupt_at(monkeypatch, step: int) -> None:
    """Deliver a real SIGINT to this process when the engine finishes step ``step``."""
    from advgan.engine.state import TrainState

    real = TrainState.update_ema

    def update(self, max_decay):
        real(self, max_decay)
        if self.step == step:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(TrainState, "update_ema", update)


def test_sigint_stops_at_a_safe_point_and_resumes_bit_identically(small, tmp_path, monkeypatch):
    a = small[0]
    kw = dict(epochs=2, progress=False, device="cpu", batch_size=16, seed=1)
    ref, _ = train_classifier(tiny_clf(), a, out_dir=tmp_path / "ref", **kw)
    _interrupt_at(monkeypatch, 3)  # mid-epoch (4 steps an epoch)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 3 \(epoch 1\): a checkpoint at step 3 is saved"):
        train_classifier(tiny_clf(), a, out_dir=run, **kw)
    assert not list(run.rglob(LOCK))
    monkeypatch.undo()
    resumed, hist = train_classifier(tiny_clf(), a, out_dir=run, **kw)
    assert hist.steps[0]["step"] == 1 and hist.steps[-1]["step"] == 8
    assert all(torch.equal(p, q) for p, q in zip(ref.state_dict().values(), resumed.state_dict().values()))


def test_cli_sigint_says_the_same_command_resumes(tmp_path, capsys, monkeypatch):
    _interrupt_at(monkeypatch, 2)
    argv = ["train-classifier", "--model", "tiny_cnn", "--dataset", "digits", "--epochs", "2", "--device", "cpu",
            "--no-progress", "--batch-size", "256", "--out", tmp_path / "o"]
    code, err = cli(argv, capsys)
    assert code == 130
    assert re.search(r"interrupted \(training interrupted at step 2 .*a checkpoint at step 2 is saved in .*\)\. "
                     r"Re-run the same command to resume", one_line(err)), err
    assert not list(tmp_path.rglob(LOCK))
    monkeypatch.undo()
    assert cli(argv, capsys)[0] == 0


@pytest.mark.slow
def test_cli_sigint_in_a_subprocess(tmp_path):
    out = tmp_path / "o"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "advgan.cli", "train-classifier", "--model", "tiny_cnn", "--dataset", "digits",
                          "--epochs", "400", "--device", "cpu", "--no-progress", "--batch-size", "64", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ck = out / "checkpoint" / "checkpoint.safetensors"
    deadline = time.time() + 240
    while not ck.is_file() and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "Re-run the same command to resume" in err
    assert not (out / LOCK).exists() and ck.is_file()
