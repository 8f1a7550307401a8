"""The demo's report: report.md (tables + images), report.json (every number), PNGs, terminal table."""
from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Any

import torch

from attacks.checkpoint import atomic_write_text, save_json


def _rows(report: Any) -> dict[str, dict[str, float | None]]:
    out = {}
    for name in report.attacks:
        r = report[name]
        out[name] = {"eps": r.eps, "attack_success_rate": r.attack_success_rate, "robust_accuracy": r.robust_accuracy,
                     "mean_linf": r.mean_linf, "mean_l2": r.mean_l2, "images_per_second": r.images_per_second}
    return out


def _corruptions(before: Any, after: Any) -> dict[str, Any] | None:
    """Accuracy per corruption before and after the defense (one severity), their means and the after/before mCE."""
    b, a = before.corruption_results, after.corruption_results
    if b is None or a is None:
        return None
    sev = b.severities[0]
    ce = after.corruption_error(before)
    return {"severity": sev, "before": {c: row[sev] for c, row in b.accuracy.items()},
            "after": {c: row[sev] for c, row in a.accuracy.items()},
            "mean_before": b.mean_accuracy, "mean_after": a.mean_accuracy, "mce_after_vs_before": ce.mce,
            "seconds": sum(b.seconds.values()) + sum(a.seconds.values())}


def _machine() -> str:
    dev = f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    return f"{platform.system()} {platform.machine()}, {dev}, torch {torch.__version__}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _figures(out: Path, cfg: Any, clf: Any, atk: Any, cgan: Any, before: Any, after: Any, eval_set: Any) -> dict[str, str]:
    from advgan.engine import History
    from advgan.gans.figures import save_rows
    from attacks import PGD
    from attacks.plots import attack_grid, plot_eps_curves

    figs: dict[str, str] = {}
    # one image per class (the test split is ordered by class), up to 8
    idx = [int((eval_set.labels == c).nonzero()[0]) for c in torch.unique(eval_set.labels).tolist()][:8]
    x, y = eval_set.images[idx], eval_set.labels[idx]
    with torch.no_grad():
        pc = clf(x).argmax(1)
    adv_g = atk.as_attack()(clf, x, y)
    adv_p = PGD(cfg.eps, cfg.norm, steps=cfg.pgd_steps, seed=cfg.seed)(clf, x, y)
    with torch.no_grad():
        preds = {"AdvGAN": clf(adv_g).argmax(1), f"PGD-{cfg.pgd_steps}": clf(adv_p).argmax(1)}
    attack_grid(x, {"AdvGAN": adv_g, f"PGD-{cfg.pgd_steps}": adv_p}, pc, preds, out / "grid.png")
    figs["grid"] = "grid.png"

    curves = {}
    for tag, rep in (("before", before), ("after", after)):
        for name in rep.attacks:
            pts = rep.curve(name)
            if len(pts) > 1:
                curves[f"{name} ({tag})"] = [(e, r.robust_accuracy, r.attack_success_rate) for e, r in pts]
    if curves:
        plot_eps_curves(curves, out / "eps_curves.png", norm=cfg.norm)
        figs["eps_curves"] = "eps_curves.png"

    for name, key in (("attacker", "gan_losses"), ("attacker_retrained", "gan_losses_retrained")):
        h = _history_file(out / name / "run")
        if h is not None:
            History.load(h).plot(out / f"{key}.png", title=f"AdvGAN training losses ({name})")
            figs[key] = f"{key}.png"
    h = _history_file(out / "cgan" / "run")
    if h is not None:
        History.load(h).plot(out / "cgan_losses.png", title="conditional GAN losses")
        figs["cgan_losses"] = "cgan_losses.png"

    labels = torch.arange(cgan.num_classes).repeat_interleave(8)
    samples = cgan.sample(labels.numel(), labels=labels, seed=cfg.seed)
    save_rows({str(c): samples[labels == c] for c in range(cgan.num_classes)}, out / "cgan_samples.png",
              title="conditional GAN samples (one row per requested class)")
    figs["cgan_samples"] = "cgan_samples.png"
    return figs


def _history_file(run_dir: Path) -> Path | None:
    """The engine's history.json of a run (models put their engine state in run/ or run/checkpoint/)."""
    for h in (run_dir / "history.json", run_dir / "checkpoint" / "history.json"):
        if h.is_file():
            return h
    return None


def write_report(out: Path, cfg: Any, *, clf: Any, atk: Any, cgan: Any, before: Any, after: Any,
                 eval_set: Any, timings: dict[str, float], defense_stage: str | None = None) -> dict[str, Any]:
    figs = _figures(out, cfg, clf, atk, cgan, before, after, eval_set)
    summary: dict[str, Any] = {
        "config": dataclasses.asdict(cfg),
        "machine": _machine(),
        "clean_accuracy": {"before": before.clean_accuracy, "after": after.clean_accuracy},
        "before": _rows(before),
        "after": _rows(after),
        "flags": {"before": list(before.flags), "after": list(after.flags)},
        "corruptions": _corruptions(before, after),
        "timings_seconds": timings,
        "figures": figs,
        "reports": {"before": "eval_before/report.json", "after": "eval_after/report.json"},
    }
    summary["defense"] = defense_summary(summary, cfg, defense_stage)
    save_json(out / "report.json", summary)
    atomic_write_text(out / "report.md", _markdown(summary, cfg))
    print(terminal_table(summary))
    print("\n".join(line.replace("**", "") for line in _defense_lines(summary["defense"])[2:4]))
    return summary


def defense_summary(s: dict[str, Any], cfg: Any, stage: str | None) -> dict[str, Any]:
    """What the defense bought (robust accuracy before/after under the attacks it did not train on) and cost
    (fine-tuning seconds, as clean epochs of the target's training and as a share of the demo's time)."""
    t = s["timings_seconds"]
    seconds = t.get(stage) if stage else None
    clean = t.get("train target classifier")
    clean_epoch = clean / cfg.classifier_epochs if clean else None
    trained_on = ["advgan"] if cfg.finetune_method == "augment" else []
    unseen = {n: {"before": s["before"][n]["robust_accuracy"] if n in s["before"] else None, "after": a["robust_accuracy"]}
              for n, a in s["after"].items() if n not in trained_on}
    return {"method": cfg.finetune_method, "epochs": cfg.finetune_epochs, "trained_on": trained_on,
            "robust_accuracy_unseen_attacks": unseen,
            "worst_unseen": {ph: min((v[ph] for v in unseen.values() if v[ph] is not None), default=None)
                             for ph in ("before", "after")},
            "clean_accuracy": s["clean_accuracy"], "seconds": seconds,
            "clean_epochs_equivalent": seconds / clean_epoch if seconds and clean_epoch else None,
            "share_of_demo_time": seconds / sum(t.values()) if seconds and t else None}


def _defense_lines(d: dict[str, Any]) -> list[str]:
    shown = ", ".join(f"{n} {_pct(v['before'])} → {_pct(v['after'])}" for n, v in d["robust_accuracy_unseen_attacks"].items())
    cost = "—" if d["seconds"] is None else f"{d['seconds']:.0f} s"
    if d["clean_epochs_equivalent"] is not None:
        cost += f" (≈ {d['clean_epochs_equivalent']:.1f} epochs of the target's clean training"
        cost += f", {100 * d['share_of_demo_time']:.0f} % of the demo's time)" if d["share_of_demo_time"] else ")"
    seen = f" (it trained on {', '.join(d['trained_on'])})" if d["trained_on"] else ""
    return ["## What the defense bought and cost", "",
            f"- **Cost:** {d['epochs']} epochs of `{d['method']}`: {cost}.",
            f"- **Bought:** worst-case robust accuracy over the attacks it did not train on{seen}: "
            f"{_pct(d['worst_unseen']['before'])} → **{_pct(d['worst_unseen']['after'])}** "
            f"(clean {_pct(d['clean_accuracy']['before'])} → {_pct(d['clean_accuracy']['after'])}); per attack: {shown}.", ""]


def terminal_table(s: dict[str, Any]) -> str:
    names = list(s["after"])
    w = max(len(n) for n in names) + 2
    lines = [f"{'attack (eps=' + str(s['config']['eps']) + ')':<{w + 4}} {'ASR before':>11} {'ASR after':>10} "
             f"{'robust acc before':>18} {'robust acc after':>17} {'img/s':>9}"]
    lines.append(f"{'clean accuracy':<{w + 4}} {'':>11} {'':>10} {_pct(s['clean_accuracy']['before']):>18} "
                 f"{_pct(s['clean_accuracy']['after']):>17}")
    for n in names:
        b, a = s["before"].get(n), s["after"][n]
        lines.append(f"{n:<{w + 4}} {_pct(b and b['attack_success_rate']):>11} {_pct(a['attack_success_rate']):>10} "
                     f"{_pct(b and b['robust_accuracy']):>18} {_pct(a['robust_accuracy']):>17} {a['images_per_second']:>9.0f}")
    c = s.get("corruptions")
    if c:
        label = f"corruptions (mean, severity {c['severity']})"
        lines.append(f"{label:<{w + 4}} {'':>11} {'':>10} {_pct(c['mean_before']):>18} {_pct(c['mean_after']):>17}")
    return "\n".join(lines)


def _corruption_markdown(c: dict[str, Any] | None) -> list[str]:
    if not c:
        return []
    md = ["", f"## Natural corruptions (severity {c['severity']}), before and after the defense", "",
          f"Accuracy on the evaluation images under each corruption (the same corrupted images for both models). "
          f"Mean: **{_pct(c['mean_before'])} → {_pct(c['mean_after'])}**; mCE of the defended model against the "
          f"undefended one: **{c['mce_after_vs_before']:.3f}** (below 1: fewer errors). "
          f"Corrupting and classifying took {c['seconds']:.1f} s of the two evaluations.", "",
          "| corruption | acc. before | acc. after |", "|---|---:|---:|"]
    md += [f"| {n} | {_pct(v)} | {_pct(c['after'].get(n))} |" for n, v in c["before"].items()]
    return md


def _markdown(s: dict[str, Any], cfg: Any) -> str:
    c = s["config"]
    md = [
        "# advgan demo report", "",
        f"Dataset **{c['dataset']}**, target **{c['model']}**, threat model **{c['norm']} ε = {c['eps']}**, "
        f"{c['eval_images']} evaluation images. Machine: {s['machine']}.", "",
        "Attack success rate (ASR) counts only inputs the model classified correctly; robust accuracy is over all "
        "inputs, so read it next to the clean accuracy.", "",
        "## Before and after the defense", "",
        (f"Fine-tuning method: **augment** with adversarial examples from the AdvGAN attacker and "
         f"PGD-{c['train_pgd_steps']} ({int(100 * c['finetune_fraction'])}% of each batch). " if c["finetune_method"] == "augment"
         else f"Fine-tuning method: **{c['finetune_method']}** for {c['finetune_epochs']} epochs (see `advgan finetune --help`). ")
        + "`advgan-retrained` is a new AdvGAN trained against the defended model.", "",
        "| attack | ASR before | ASR after | robust acc. before | robust acc. after | mean L∞ | images/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| (clean) | | | {_pct(s['clean_accuracy']['before'])} | {_pct(s['clean_accuracy']['after'])} | | |",
    ]
    for n, a in s["after"].items():
        b = s["before"].get(n)
        md.append(f"| {n} | {_pct(b and b['attack_success_rate'])} | {_pct(a['attack_success_rate'])} | "
                  f"{_pct(b and b['robust_accuracy'])} | {_pct(a['robust_accuracy'])} | {a['mean_linf']:.3f} | "
                  f"{a['images_per_second']:.0f} |")
    md += _corruption_markdown(s.get("corruptions"))
    md += ["", *_defense_lines(s["defense"])]
    flags = s["flags"]["before"] + s["flags"]["after"]
    md += ["## Sanity checks", ""]
    md += [f"- {f}" for f in flags] if flags else [
        "- no flags raised (success non-decreasing in ε, PGD ≥ FGSM, logits not probabilities, non-zero input gradients)."]
    titles = {"grid": "Clean | perturbation | adversarial (undefended model)", "eps_curves": "Robust accuracy and ASR vs ε",
              "gan_losses": "AdvGAN training losses", "gan_losses_retrained": "AdvGAN retrained against the defended model",
              "cgan_losses": "Conditional GAN losses", "cgan_samples": "Conditional GAN samples"}
    for key, fname in s["figures"].items():
        md += ["", f"## {titles.get(key, key)}", "", f"![{key}]({fname})"]
    md += ["", "## Time per stage", "", "| stage | seconds |", "|---|---:|"]
    md += [f"| {k} | {v:.1f} |" for k, v in s["timings_seconds"].items()]
    md += ["", "Full per-attack reports (with ε sweeps): `eval_before/report.md`, `eval_after/report.md`.", ""]
    return "\n".join(md)
