"""Kill and resume: SIGKILL a training process at a random step, re-run it, get bit-identical final weights.

For AdvGAN training and for robust fine-tuning, a small script (fixed seed, tiny nets, a few hundred
MNIST-5k images, a checkpoint every few steps, CPU, one thread) is run three times in subprocesses:
uninterrupted; started and SIGKILLed at a random step after the first checkpoint; and re-run in the
killed run's folder, which resumes from its last checkpoint. The final weights must be equal bit for bit.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from attacks.checkpoint import load_tensors

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH, EPOCHS, CKPT_EVERY = 8, 2, 3   # 128 images, batch 16

SCRIPT = textwrap.dedent("""
    import os
    import signal
    import sys
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    from attacks import Classifier
    from advgan import data
    from attacks.checkpoint import load_tensors

    which, out, images, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    t = load_tensors(images)  # 128 MNIST-5k training images (written by the test; loading mnist5k is slower)
    ds = data.ImageDataset(t["images"], t["labels"], 10, "mnist5k-128")
    torch.manual_seed(0)
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)

    def announce(cls):
        loss = cls.loss
        def wrapped(self, player, batch, step):
            if player == self.players()[0].name:
                print(f"step {step}", flush=True)
                if step == kill_at:  # SIGKILL from inside the step itself: no scheduler lag can let it run on
                    os.kill(os.getpid(), signal.SIGKILL)
            return loss(self, player, batch, step)
        cls.loss = wrapped

    common = dict(batch_size=16, checkpoint_every=%(ckpt)d, seed=3, device="cpu", progress=False, log_every=1)
    if which == "advgan":
        from advgan.attacker import AdvGAN, AdvGANConfig, AdvGANGame
        announce(AdvGANGame)
        atk = AdvGAN(clf, AdvGANConfig(eps=0.3, width=4, **common))
        atk.fit(ds, epochs=%(epochs)d, out_dir=out)
    else:
        from defenses import FinetuneConfig, finetune
        from defenses.finetune import FinetuneGame
        announce(FinetuneGame)
        finetune(clf, ds, FinetuneConfig(method="pgd-at", eps=0.3, pgd_steps=2, epochs=%(epochs)d, **common), out_dir=out)
    print("done", flush=True)
""") % {"ckpt": CKPT_EVERY, "epochs": EPOCHS}

WEIGHTS = {"advgan": "weights.safetensors", "finetune": "model.safetensors"}


def _run(script: Path, which: str, out: Path, kill_at: int | None = None) -> list[int]:
    """Run the script; with ``kill_at`` it SIGKILLs itself inside step ``kill_at``. Returns the steps seen."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, str(script), which, str(out), str(script.parent / "images.safetensors"),
                          str(-1 if kill_at is None else kill_at)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, cwd=ROOT, text=True)
    steps: list[int] = []
    try:
        for line in p.stdout:
            if line.startswith("step "):
                steps.append(int(line.split()[1]))
        p.wait(timeout=120)
        if kill_at is not None:
            assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr.read())
            return steps
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, p.stderr.read()
    return steps


@pytest.mark.slow
@pytest.mark.parametrize("which", ["advgan", "finetune"])
def test_sigkill_and_resume_is_bit_identical(which, tmp_path, mnist):
    from attacks.checkpoint import save_tensors

    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    sub = mnist[0].subset(160, seed=0)
    save_tensors(tmp_path / "images.safetensors", {"images": sub.images[:128], "labels": sub.labels[:128]})
    total = STEPS_PER_EPOCH * EPOCHS
    # a random step after the first checkpoint, not on a checkpoint (so the work since the last one is lost and redone)
    kill_at = random.Random(hash(which) % 1000 + int(time.time()) // 3600).choice(
        [s for s in range(CKPT_EVERY + 1, total - 1) if s % CKPT_EVERY and s % STEPS_PER_EPOCH])
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # the uninterrupted and the killed run side by side (one thread each)
        f_straight = pool.submit(_run, script, which, tmp_path / "straight")
        f_killed = pool.submit(_run, script, which, tmp_path / "killed", kill_at)
        straight, killed = f_straight.result(), f_killed.result()
    assert straight == list(range(total))
    assert killed[-1] == kill_at
    assert (tmp_path / "killed" / "checkpoint" / "checkpoint.safetensors").is_file()
    assert not (tmp_path / "killed" / WEIGHTS[which]).exists(), "the killed run must not have finished"

    resumed = _run(script, which, tmp_path / "killed")
    # checkpoints: every CKPT_EVERY steps and at each epoch's end; "step k" is printed after step k's checkpoint
    last_ckpt = max(s for s in range(kill_at + 1) if s % CKPT_EVERY == 0 or s % STEPS_PER_EPOCH == 0)
    # the process killed itself inside step kill_at, so it resumes from exactly the last checkpoint before it
    assert resumed[0] == last_ckpt, (
        f"resumed at step {resumed[0]}, expected a checkpoint boundary >= {last_ckpt} (killed at step {kill_at})")
    assert resumed[-1] == total - 1

    a = load_tensors(tmp_path / "straight" / WEIGHTS[which])
    b = load_tensors(tmp_path / "killed" / WEIGHTS[which])
    assert a.keys() == b.keys() and len(a) > 0
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"killed at step {kill_at}, resumed from {last_ckpt}: tensors differ: {diff[:5]}"
