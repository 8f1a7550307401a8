"""The main job, end to end: target -> AdvGAN -> compare attacks -> fine-tune -> re-attack -> report.

Every stage writes into its own folder under ``out``; a stage whose output exists is skipped, and the
training stages resume from their checkpoints, so re-running an interrupted demo loses nothing.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attacks.checks import check_choice, check_eps, check_positive_int


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and settings of the demo. ``DemoConfig.quick()`` is the CI-sized variant."""

    dataset: str = "mnist5k"
    model: str = "resnet18"            #: any timm model (or a built-in: small_cnn, tiny_cnn)
    eps: float = 0.3
    norm: str = "linf"
    train_images: int | None = None    #: subset of the train split (None: all)
    eval_images: int = 1000            #: test images used for every evaluation
    classifier_epochs: int = 4
    classifier_batch_size: int = 128
    attacker_epochs: int = 4
    finetune_epochs: int = 3
    finetune_method: str = "augment"
    finetune_fraction: float = 0.5
    pgd_steps: int = 40                #: PGD / foolbox PGD steps at evaluation
    train_pgd_steps: int = 10          #: PGD steps of the augmentation source during fine-tuning
    cgan_epochs: int = 6
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", check_eps(self.eps, self.norm))
        for f in ("eval_images", "classifier_epochs", "classifier_batch_size", "attacker_epochs", "finetune_epochs", "pgd_steps",
                  "train_pgd_steps", "cgan_epochs", "batch_size"):
            check_positive_int(getattr(self, f), f)
        if self.train_images is not None:
            check_positive_int(self.train_images, "train_images", minimum=100)
        check_choice(self.finetune_method, "finetune_method", ("augment", "pgd-at", "fgsm-rs", "trades"))

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """Minutes-sized on a CPU: fewer images, epochs and PGD steps (numbers are rougher)."""
        base = dict(train_images=1500, eval_images=200, classifier_epochs=3, classifier_batch_size=32, attacker_epochs=2, finetune_epochs=2,
                    pgd_steps=10, train_pgd_steps=5, cgan_epochs=2)
        base.update(overrides)
        return cls(**base)


def _sweep(eps: float) -> list[float]:
    return sorted({round(eps * f, 6) for f in (1 / 6, 1 / 3, 2 / 3, 1.0)})


class Stages:
    """Runs named stages once: a stage is done when its marker file exists."""

    def __init__(self, out: Path, log: Callable[[str], None]) -> None:
        self.out, self.log = out, log
        self.timings: dict[str, float] = {}
        f = out / "timings.json"
        if f.is_file():
            self.timings = json.loads(f.read_text())

    def run(self, name: str, marker: str, fn: Callable[[], Any], load: Callable[[], Any]) -> Any:
        if (self.out / marker).exists():
            self.log(f"[{name}] done already ({marker}); skipping")
            return load()
        self.log(f"[{name}] ...")
        t0 = time.perf_counter()
        result = fn()
        self.timings[name] = round(time.perf_counter() - t0, 2)
        from attacks.checkpoint import save_json

        save_json(self.out / "timings.json", self.timings)
        self.log(f"[{name}] finished in {self.timings[name]:.1f}s")
        return result


def run_demo(cfg: DemoConfig, out: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the whole demo into ``out``; returns the summary written to ``report.json``."""
    from advgan import data
    from advgan.attacker import AdvGAN, AdvGANConfig
    from advgan.gans import ConditionalGAN, ConditionalGANConfig
    from advgan.training import ClassifierConfig, train_classifier
    from attacks import FGSM, PGD, Classifier, FoolboxAttack, RandomNoise, evaluate
    from defenses import FinetuneConfig, finetune

    from .demo_report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from attacks.checkpoint import load_json, save_json

    cfg_file = out / "demo_config.json"
    if cfg_file.is_file():
        old = load_json(cfg_file, what="demo config")
        if old != json.loads(json.dumps(dataclasses.asdict(cfg))):
            raise ValueError(f"{out} holds a demo run with other settings ({cfg_file}); use another --out to start fresh.")
    save_json(cfg_file, dataclasses.asdict(cfg))
    torch.manual_seed(cfg.seed)
    st = Stages(out, log)
    common = dict(seed=cfg.seed, device=cfg.device, progress=cfg.progress)

    train, test = data.load(cfg.dataset, seed=cfg.seed)
    if cfg.train_images and cfg.train_images < len(train):
        train = train.subset(cfg.train_images, seed=cfg.seed)
    eval_set = test.subset(cfg.eval_images, seed=cfg.seed) if cfg.eval_images < len(test) else test
    eval_loader = data.loader(eval_set, 250)
    chans, ncls = train.channels, train.num_classes
    log(f"data: {cfg.dataset} train={len(train)} eval={len(eval_set)} images {tuple(train.images.shape[1:])}")

    # 1. target classifier -------------------------------------------------------------------
    def make_clf():
        clf = Classifier.create(cfg.model, ncls, in_chans=chans)
        ccfg = ClassifierConfig(batch_size=cfg.classifier_batch_size, **common)
        clf, _ = train_classifier(clf, train, test, ccfg, epochs=cfg.classifier_epochs, out_dir=out / "classifier")
        return clf

    clf = st.run("train target classifier", "classifier/config.json", make_clf, lambda: Classifier.load(out / "classifier"))

    # 2. AdvGAN attacker ---------------------------------------------------------------------
    acfg = AdvGANConfig(eps=cfg.eps, norm=cfg.norm, batch_size=cfg.batch_size, **common)

    def make_attacker(target: Classifier, name: str) -> AdvGAN:
        atk = AdvGAN(target, acfg)
        hist = atk.fit(train, cfg.attacker_epochs, out_dir=out / name / "run", val_loader=eval_loader)
        atk.save(out / name)
        hist.plot(out / name / "losses.png", title=f"AdvGAN losses ({name})")
        return atk

    atk = st.run("train AdvGAN attacker", "attacker/config.json", lambda: make_attacker(clf, "attacker"),
                 lambda: AdvGAN.load(out / "attacker", clf))

    # 3. compare attacks on the undefended model ----------------------------------------------
    def suite(extra: dict[str, Any]) -> dict[str, Any]:
        a = {
            "noise": RandomNoise(cfg.eps, cfg.norm, seed=cfg.seed),
            "fgsm": FGSM(cfg.eps, cfg.norm),
            # early stop: stops working on inputs already fooled; the same or higher success, far less work
            f"pgd-{cfg.pgd_steps}": PGD(cfg.eps, cfg.norm, steps=cfg.pgd_steps, seed=cfg.seed, early_stop=True),
            f"foolbox-pgd-{cfg.pgd_steps}": FoolboxAttack("LinfPGD" if cfg.norm == "linf" else "L2PGD", cfg.eps,
                                                          steps=cfg.pgd_steps, seed=cfg.seed),
            "advgan": atk.as_attack(),
        }
        a.update(extra)
        return a

    sweep = {f"pgd-{cfg.pgd_steps}": _sweep(cfg.eps), "advgan": _sweep(cfg.eps)}

    def run_eval(model: Classifier, attacks: dict[str, Any], name: str):
        rep = evaluate(model, eval_loader, attacks, epsilons=sweep, device=None if cfg.device == "auto" else cfg.device,
                       seed=cfg.seed, progress=cfg.progress)
        rep.save(out / name)
        return rep

    from attacks.report import Report

    before = st.run("evaluate undefended model", "eval_before/report.json", lambda: run_eval(clf, suite({}), "eval_before"),
                    lambda: Report.from_json(out / "eval_before" / "report.json"))

    # 4. fine-tune with adversarial augmentation (AdvGAN pool + PGD) -----------------------------
    def make_robust() -> Classifier:
        fcfg = FinetuneConfig(method=cfg.finetune_method, eps=cfg.eps, norm=cfg.norm, fraction=cfg.finetune_fraction,
                              epochs=cfg.finetune_epochs, pgd_steps=cfg.train_pgd_steps, batch_size=cfg.batch_size, **common)
        sources = [atk.as_attack(), PGD(cfg.eps, cfg.norm, steps=cfg.train_pgd_steps, seed=cfg.seed)]
        robust, _ = finetune(clf, data.loader(train, cfg.batch_size, shuffle=True, seed=cfg.seed), fcfg,
                             sources=sources, val_loader=eval_loader, out_dir=out / "robust" / "run")
        robust.save(out / "robust")
        return robust

    robust = st.run(f"fine-tune ({cfg.finetune_method}: AdvGAN + PGD)", "robust/config.json", make_robust,
                    lambda: Classifier.load(out / "robust"))

    # 5. retrain an attacker against the defended model, 6. re-attack -------------------------
    atk2 = st.run("retrain AdvGAN against the defended model", "attacker_retrained/config.json",
                  lambda: make_attacker(robust, "attacker_retrained"), lambda: AdvGAN.load(out / "attacker_retrained", robust))
    after = st.run("evaluate defended model", "eval_after/report.json",
                   lambda: run_eval(robust, suite({"advgan-retrained": atk2.as_attack()}), "eval_after"),
                   lambda: Report.from_json(out / "eval_after" / "report.json"))

    # 7. the conditional-GAN core on the same data ------------------------------------------------
    def make_cgan():
        g = ConditionalGAN(ConditionalGANConfig(batch_size=cfg.batch_size, **common), tuple(train.images.shape[1:]), ncls)
        g.fit(train, cfg.cgan_epochs, out_dir=out / "cgan" / "run")
        g.save(out / "cgan")
        return g

    cgan = st.run("train conditional GAN", "cgan/config.json", make_cgan, lambda: ConditionalGAN.load(out / "cgan"))

    summary = write_report(out, cfg, clf=clf, atk=atk, cgan=cgan, before=before, after=after,
                           eval_set=eval_set, timings=st.timings)
    return summary
