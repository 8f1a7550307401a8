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
from typing import Annotated, Any

import torch

from attacks.checks import check_eps
from attacks.corruptions import corruption_names
from defenses.methods import METHODS  # the CLI is the one advgan module that may import defenses

from ..config import FLAG, SEED, Choice, Config, Flag, Integer, Real, Text

POSITIVE = Integer(1)
FINETUNE_METHODS = tuple(m for m in METHODS if m != "clean")


@dataclass(frozen=True)
class DemoConfig(Config):
    """Sizes and settings of the demo. ``DemoConfig.quick()`` is the CI-sized variant."""

    dataset: Annotated[str, Text()] = "mnist5k"                    #: dataset name
    model: Annotated[str, Text()] = "resnet18"                     #: timm model name or built-in (small_cnn, tiny_cnn)
    eps: Annotated[float, Real(0)] = 0.3                           #: budget in pixel units [0, 1]
    norm: Annotated[str, Choice(("linf", "l2"))] = "linf"          #: linf | l2
    train_images: Annotated[int | None, Integer(100, optional=True)] = None  #: subset of the train split (None: all)
    eval_images: Annotated[int, POSITIVE] = 1000                   #: test images used for every evaluation
    classifier_epochs: Annotated[int, POSITIVE] = 4                #: epochs of the target classifier
    classifier_batch_size: Annotated[int, POSITIVE] = 128          #: batch size of the target classifier
    attacker_epochs: Annotated[int, POSITIVE] = 4                  #: epochs of each AdvGAN attacker
    finetune_epochs: Annotated[int, POSITIVE] = 3                  #: epochs of the fine-tuning
    finetune_method: Annotated[str, Choice(FINETUNE_METHODS), Flag("method")] = "fgsm-rs"  #: fine-tuning method
    finetune_fraction: Annotated[float, Real(0, 1, closed=(False, True))] = 0.5  #: augment: share of each batch made adversarial
    finetune_eps_ramp_epochs: Annotated[float, Real(0, closed=True)] = 1.0  #: fine-tuning: ramp eps up over this many epochs
    pgd_steps: Annotated[int, POSITIVE] = 40                       #: PGD / foolbox PGD steps at evaluation
    train_pgd_steps: Annotated[int, POSITIVE] = 10                 #: training PGD steps (augment's PGD source, pgd-at, trades...)
    cgan_epochs: Annotated[int, POSITIVE] = 6                      #: epochs of the conditional GAN
    batch_size: Annotated[int, POSITIVE] = 64                      #: batch size of the attackers, fine-tuning and cGAN
    seed: Annotated[int, SEED] = 0                                 #: random seed (runs are repeatable on one machine)
    device: Annotated[str, Text()] = "auto"                        #: cpu, cuda, cuda:1 or auto (cuda when available)
    corruptions: Annotated[str, Text()] = "all"                    #: natural corruptions measured before/after (all, a family, a,b; none)
    corruption_severity: Annotated[int, Integer(1, 5)] = 3         #: their severity (1..5)
    progress: Annotated[bool, FLAG] = True                         #: show progress bars

    def validate(self) -> None:
        object.__setattr__(self, "eps", check_eps(self.eps, self.norm))
        if self.corruption_spec is not None:
            corruption_names(self.corruption_spec)

    @property
    def corruption_spec(self) -> str | list[str] | None:
        """``corruptions`` for ``evaluate`` (None for "none")."""
        if self.corruptions == "none":
            return None
        parts = [p.strip() for p in self.corruptions.split(",") if p.strip()]
        return parts[0] if len(parts) == 1 else parts

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """Minutes-sized on a CPU: fewer images, epochs and PGD steps (numbers are rougher)."""
        base: dict[str, Any] = dict(train_images=1500, eval_images=200, classifier_epochs=3, classifier_batch_size=32,
                                    attacker_epochs=2, finetune_epochs=2, pgd_steps=10, train_pgd_steps=5, cgan_epochs=2)
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


class Demo:
    """The stages of the demo on one dataset (each a method; ``run_demo`` runs them in order)."""

    def __init__(self, cfg: DemoConfig, out: Path, log: Callable[[str], None]) -> None:
        from advgan import data

        self.cfg, self.out, self.log = cfg, out, log
        self.st = Stages(out, log)
        self.common: dict[str, Any] = dict(seed=cfg.seed, device=cfg.device, progress=cfg.progress)
        train, test = data.load(cfg.dataset, seed=cfg.seed)
        if cfg.train_images and cfg.train_images < len(train):
            train = train.subset(cfg.train_images, seed=cfg.seed)
        self.train, self.test = train, test
        self.eval_set = test.subset(cfg.eval_images, seed=cfg.seed) if cfg.eval_images < len(test) else test
        self.eval_loader = data.loader(self.eval_set, 250)
        self.sweep = {f"pgd-{cfg.pgd_steps}": _sweep(cfg.eps), "advgan": _sweep(cfg.eps)}
        log(f"data: {cfg.dataset} train={len(train)} eval={len(self.eval_set)} images {tuple(train.images.shape[1:])}")

    def classifier(self) -> Any:
        """1. the target classifier."""
        from advgan.training import ClassifierConfig, train_classifier
        from attacks import Classifier

        cfg, out = self.cfg, self.out

        def make() -> Any:
            clf = Classifier.create(cfg.model, self.train.num_classes, in_chans=self.train.channels)
            ccfg = ClassifierConfig(batch_size=cfg.classifier_batch_size, **self.common)
            return train_classifier(clf, self.train, self.test, ccfg, epochs=cfg.classifier_epochs, out_dir=out / "classifier")[0]

        return self.st.run("train target classifier", "classifier/config.json", make, lambda: Classifier.load(out / "classifier"))

    def attacker(self, target: Any, name: str, stage: str) -> Any:
        """2. / 5. an AdvGAN attacker of ``target`` (in ``out/name``)."""
        from advgan.attacker import AdvGAN, AdvGANConfig

        cfg, out = self.cfg, self.out

        def make() -> Any:
            atk = AdvGAN(target, AdvGANConfig(eps=cfg.eps, norm=cfg.norm, batch_size=cfg.batch_size, **self.common))
            hist = atk.fit(self.train, cfg.attacker_epochs, out_dir=out / name / "run", val_loader=self.eval_loader)
            atk.save(out / name)
            hist.plot(out / name / "losses.png", title=f"AdvGAN losses ({name})")
            return atk

        return self.st.run(stage, f"{name}/config.json", make, lambda: AdvGAN.load(out / name, target))

    def suite(self, atk: Any, extra: dict[str, Any]) -> dict[str, Any]:
        """The attacks compared before and after the defense."""
        from attacks import FGSM, PGD, FoolboxAttack, RandomNoise

        cfg = self.cfg
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

    def evaluation(self, model: Any, attacks: dict[str, Any], name: str, stage: str) -> Any:
        """3. / 6. an evaluation report (in ``out/name``)."""
        from attacks import evaluate
        from attacks.report import Report

        cfg, out = self.cfg, self.out

        def make() -> Any:
            rep = evaluate(model, self.eval_loader, attacks, epsilons=self.sweep,
                           device=None if cfg.device == "auto" else cfg.device, seed=cfg.seed, progress=cfg.progress,
                           corruptions=cfg.corruption_spec, severities=(cfg.corruption_severity,))
            rep.save(out / name)
            return rep

        return self.st.run(stage, f"{name}/report.json", make, lambda: Report.from_json(out / name / "report.json"))

    def robust(self, clf: Any, atk: Any) -> Any:
        """4. fine-tune with adversarial augmentation (AdvGAN + PGD)."""
        from advgan import data
        from attacks import PGD, Classifier
        from defenses import FinetuneConfig, finetune

        cfg, out = self.cfg, self.out

        def make() -> Any:
            fcfg = FinetuneConfig(method=cfg.finetune_method, eps=cfg.eps, norm=cfg.norm, fraction=cfg.finetune_fraction,
                                  epochs=cfg.finetune_epochs, pgd_steps=cfg.train_pgd_steps, batch_size=cfg.batch_size,
                                  eps_ramp_epochs=cfg.finetune_eps_ramp_epochs, **self.common)
            # augment trains on these sources; the other methods make their own examples (and validate on PGD)
            sources = [atk.as_attack(), PGD(cfg.eps, cfg.norm, steps=cfg.train_pgd_steps, seed=cfg.seed)] \
                if cfg.finetune_method == "augment" else None
            robust, _ = finetune(clf, data.loader(self.train, cfg.batch_size, shuffle=True, seed=cfg.seed), fcfg,
                                 sources=sources, val_loader=self.eval_loader, out_dir=out / "robust" / "run")
            robust.save(out / "robust")
            return robust

        return self.st.run(finetune_stage(cfg), "robust/config.json", make,
                           lambda: Classifier.load(out / "robust"))

    def cgan(self) -> Any:
        """7. the conditional-GAN core on the same data."""
        from advgan.gans import ConditionalGAN, ConditionalGANConfig

        cfg, out = self.cfg, self.out

        def make() -> Any:
            g = ConditionalGAN(ConditionalGANConfig(batch_size=cfg.batch_size, **self.common), tuple(self.train.images.shape[1:]),
                               self.train.num_classes)
            g.fit(self.train, cfg.cgan_epochs, out_dir=out / "cgan" / "run")
            g.save(out / "cgan")
            return g

        return self.st.run("train conditional GAN", "cgan/config.json", make, lambda: ConditionalGAN.load(out / "cgan"))


def finetune_stage(cfg: DemoConfig) -> str:
    """The name (and timing key) of the fine-tuning stage."""
    return f"fine-tune ({cfg.finetune_method}{': AdvGAN + PGD' if cfg.finetune_method == 'augment' else ''})"


def _check_out(cfg: DemoConfig, out: Path) -> None:
    """``out`` holds no demo run with other settings; record these."""
    from attacks.checkpoint import load_json, save_json

    out.mkdir(parents=True, exist_ok=True)
    cfg_file = out / "demo_config.json"
    if cfg_file.is_file():
        old = load_json(cfg_file, what="demo config")
        if old != json.loads(json.dumps(dataclasses.asdict(cfg))):
            raise ValueError(f"{out} holds a demo run with other settings ({cfg_file}); use another --out to start fresh.")
    save_json(cfg_file, dataclasses.asdict(cfg))


def run_demo(cfg: DemoConfig, out: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the whole demo into ``out``; returns the summary written to ``report.json``."""
    from .demo_report import write_report

    out = Path(out)
    _check_out(cfg, out)
    torch.manual_seed(cfg.seed)
    demo = Demo(cfg, out, log)
    clf = demo.classifier()
    atk = demo.attacker(clf, "attacker", "train AdvGAN attacker")
    before = demo.evaluation(clf, demo.suite(atk, {}), "eval_before", "evaluate undefended model")
    robust = demo.robust(clf, atk)
    atk2 = demo.attacker(robust, "attacker_retrained", "retrain AdvGAN against the defended model")
    after = demo.evaluation(robust, demo.suite(atk, {"advgan-retrained": atk2.as_attack()}), "eval_after", "evaluate defended model")
    cgan = demo.cgan()
    return write_report(out, cfg, clf=clf, atk=atk, cgan=cgan, before=before, after=after, eval_set=demo.eval_set,
                        timings=demo.st.timings, defense_stage=finetune_stage(cfg))
