"""``evaluate()``: stream a DataLoader through a frozen model and any number of attacks (and budgets).

Counts and norms accumulate on the device and are read once at the end (no per-batch host sync in
the engine itself; attacks such as early-stopping PGD may sync internally). Batches are validated
on the loader's device before they are moved (``non_blocking``). The model is frozen in eval mode
throughout and left bit-identical, on its device, in its memory format and train/eval mode.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .base import frozen_eval, random_targets
from .checks import check_eps, check_images, check_labels, looks_like_probabilities, resolve_device
from .classifier import data_chans_of, num_classes_of
from .report import AttackResult, Report
from .sanity import pgd_fgsm_pairs, post_checks, run_foolbox_crosscheck, zero_grad_fraction
from .sharding import rank_batches, rank_device, reduce_results, share_first_batch, world


class _Timer:
    """Accumulates the time of code sections; CUDA events on GPU (read at the end), perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds = 0.0
        self.events: list[tuple[Any, Any]] = []

    @contextlib.contextmanager
    def __call__(self):
        if self.cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            yield
            b.record()
            self.events.append((a, b))
        else:
            t = time.perf_counter()
            yield
            self.seconds += time.perf_counter() - t

    def total(self) -> float:
        return self.seconds + sum(a.elapsed_time(b) for a, b in self.events) / 1000.0


def _check_attacks(attacks: object, epsilons: object, targeted: bool) -> dict[str, dict[float, Any]]:
    """Validate attacks and budgets; return {name: {eps: attack at that eps}} (own eps included)."""
    if not isinstance(attacks, Mapping) or not attacks:
        raise TypeError("attacks must be a non-empty dict {name: Attack}, e.g. {'pgd': PGD(eps=0.3)}.")
    if epsilons is not None and not isinstance(epsilons, (Mapping, Sequence)) or isinstance(epsilons, str):
        raise TypeError("epsilons must be a list of budgets (applied to every attack) or a dict {attack name: list}.")
    if isinstance(epsilons, Mapping):
        unknown = set(epsilons) - set(attacks)
        if unknown:
            raise ValueError(f"epsilons names unknown attacks {sorted(unknown)}; attacks: {sorted(attacks)}.")
    out: dict[str, dict[float, Any]] = {}
    for name, atk in attacks.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"attack names must be non-empty strings, got {name!r}.")
        if not callable(atk) or not hasattr(atk, "eps") or not hasattr(atk, "norm"):
            raise TypeError(f"attack {name!r} must be an attacks.Attack (callable with .eps and .norm), got {type(atk).__name__}.")
        if targeted and not getattr(atk, "supports_targeted", True):
            raise ValueError(f"attack {name!r} ({atk!r}) does not support targeted attacks; drop it or use targeted=False.")
        if not targeted and not getattr(atk, "supports_untargeted", True):
            raise ValueError(f"attack {name!r} ({atk!r}) only supports targeted attacks; use targeted=True.")
        sweep = epsilons.get(name, ()) if isinstance(epsilons, Mapping) else (epsilons or ())
        variants = {float(atk.eps): atk}
        for e in sweep:
            e = check_eps(e, atk.norm, name=f"epsilons entry for {name!r}")
            if e not in variants:
                if not hasattr(atk, "with_eps"):
                    raise TypeError(f"attack {name!r} cannot change its budget (no with_eps); remove it from the sweep.")
                variants[e] = atk.with_eps(e)
        out[name] = variants
    return out


def _unpack(batch: object, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(f"batch {i} of the loader must be an (images, labels) pair, got {type(batch).__name__}.")
    return batch[0], batch[1]


def evaluate(
    model: nn.Module,
    loader: Iterable,
    attacks: Mapping[str, Any],
    *,
    epsilons: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    device: str | torch.device | None = None,
    amp: bool = False,
    channels_last: bool = False,
    max_batches: int | None = None,
    targeted: bool = False,
    seed: int = 0,
    progress: bool = True,
    sanity_checks: bool = True,
    grid_images: int = 8,
    crosscheck_foolbox: bool = False,
) -> Report:
    """Clean accuracy and, per attack and budget, success rate, robust accuracy, norms and speed.

    Args:
        model: the classifier (pixels in [0, 1] -> logits), e.g. an ``attacks.Classifier``.
        loader: iterable of ``(images, labels)`` batches.
        attacks: ``{name: Attack}``; each runs at its own eps and at every eps of ``epsilons``.
        epsilons: budgets to sweep: a list for every attack or ``{name: list}``.
        device: where to run (default: the model's device); the model is moved back afterwards.
        amp: autocast (float16 on CUDA, bfloat16 on CPU) for forward passes and attacks.
        channels_last: run model and inputs in channels-last memory format (restored afterwards).
        max_batches: stop after this many batches.
        targeted: attack towards random targets != label (seeded); reports targeted success rate.
        seed: seeds targets and the attacks' randomness (global RNG forked, restored afterwards).
        sanity_checks: record gradient-masking / probability / monotonicity / PGD-vs-FGSM checks.
        grid_images: images of the first batch kept for ``report.save``'s grid (0: none).
        crosscheck_foolbox: also run foolbox's LinfPGD (same settings as our first L-inf PGD) on the
            first batch and compare success rates (untargeted runs only).

    Under an initialised ``torch.distributed`` process group (e.g. ``torchrun``) each rank evaluates
    every world-size-th batch and the counts are reduced: every rank returns the report a single
    process gives on the same (unshuffled) loader; images/s use the slowest rank's time.
    Targets and the global RNG are seeded per batch (``seed`` and the batch index).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (e.g. attacks.Classifier), got {type(model).__name__}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1):
        raise ValueError(f"max_batches must be a positive int or None, got {max_batches!r}.")
    if isinstance(grid_images, bool) or not isinstance(grid_images, int) or grid_images < 0:
        raise ValueError(f"grid_images must be an int >= 0, got {grid_images!r}.")
    variants = _check_attacks(attacks, epsilons, targeted)
    try:
        n_batches = len(loader)  # type: ignore[arg-type]
    except TypeError:
        n_batches = None
    if n_batches == 0:
        raise ValueError("the loader is empty; evaluate needs at least one (images, labels) batch.")
    num_classes = num_classes_of(model)
    if targeted and num_classes is None:
        raise ValueError("targeted evaluation needs the number of classes: wrap the model in attacks.Classifier.")
    orig_device = next((p.device for p in model.parameters()), None)
    dev = resolve_device(device) if device is not None else (orig_device or torch.device("cpu"))
    dev = rank_device(dev)
    moved = orig_device is not None and orig_device != dev
    cl = channels_last and any(p.dim() == 4 for p in model.parameters())
    amp_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    cuda_devs = [dev] if dev.type == "cuda" else []

    if moved:
        model.to(dev)
    if cl:
        model.to(memory_format=torch.channels_last)
    try:
        with frozen_eval(model), torch.random.fork_rng(devices=cuda_devs):
            torch.manual_seed(seed)
            return _run(model, loader, variants, dev=dev, amp=amp, amp_dtype=amp_dtype, channels_last=channels_last,
                        max_batches=max_batches, targeted=targeted, seed=seed, progress=progress,
                        sanity_checks=sanity_checks, grid_images=grid_images, crosscheck=crosscheck_foolbox,
                        num_classes=num_classes, n_batches=n_batches)
    finally:
        if cl:
            model.to(memory_format=torch.contiguous_format)
        if moved:
            model.to(orig_device)


def _run(model, loader, variants, *, dev, amp, amp_dtype, channels_last, max_batches, targeted, seed, progress,
         sanity_checks, grid_images, crosscheck, num_classes, n_batches) -> Report:
    from tqdm.auto import tqdm

    chans = data_chans_of(model)
    tgen = torch.Generator().manual_seed(seed)
    autocast = (lambda: torch.autocast(device_type=dev.type, dtype=amp_dtype)) if amp else contextlib.nullcontext
    keys = [(name, e) for name, vs in variants.items() for e in vs]
    counts = torch.zeros(len(keys), 3, dtype=torch.long, device=dev)  # fooled, robust, target hits
    norms = torch.zeros(len(keys), 4, device=dev,  # sum linf, max linf, sum l2, max l2 (float64: order-free sums)
                        dtype=torch.float32 if dev.type == "mps" else torch.float64)
    timers = {k: _Timer(dev) for k in keys}
    pairs = pgd_fgsm_pairs(variants) if sanity_checks else []
    pair_counts = torch.zeros(max(len(pairs), 1), dtype=torch.long, device=dev)
    n_correct = torch.zeros((), dtype=torch.long, device=dev)
    finite = torch.ones((), dtype=torch.bool, device=dev)
    n, batches, sample_shape = 0, 0, None
    sanity: dict[str, Any] = {}
    grids: dict[str, Any] = {}
    deferred: dict[str, torch.Tensor] = {}  # scalars read at the end
    deferred_names: dict[str, str] = {}
    total = min(n_batches, max_batches) if n_batches is not None and max_batches else (n_batches or max_batches)
    t_start = time.perf_counter()
    batches_iter, mine = rank_batches(loader, max_batches)  # (global index, batch); this rank's share
    for i, batch in tqdm(batches_iter, total=mine or total, desc="evaluate", disable=not progress or world()[0] != 0, leave=False):
        x, y = _unpack(batch, i)
        check_images(x, name=f"images of batch {i}", channels=chans)
        check_labels(y, x.shape[0], num_classes, name=f"labels of batch {i}")
        torch.manual_seed(seed * 100_003 + i)  # per-batch seeds: the same on any number of ranks
        tgen.manual_seed(seed * 100_003 + i)
        t = random_targets(y.cpu(), num_classes, tgen) if targeted else None
        x = x.to(dev, non_blocking=True)
        y = y.to(dev, non_blocking=True)
        t = t.to(dev, non_blocking=True) if t is not None else None
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast():
            logits = model(x)
        if logits.dim() != 2 or (num_classes is not None and logits.shape[1] != num_classes):
            raise ValueError(f"the model returned shape {tuple(logits.shape)}; it must return (N, num_classes) logits.")
        pred = logits.argmax(1)
        correct = pred == y
        n_correct += correct.sum()
        finite &= torch.isfinite(logits).all()
        if i == 0:
            sample_shape = tuple(x.shape[1:])
            if sanity_checks:
                sanity["outputs_look_like_probabilities"] = looks_like_probabilities(logits)
                with autocast():
                    deferred["zero_gradient_fraction"] = zero_grad_fraction(model, x, y)
            if grid_images:
                k = min(grid_images, x.shape[0])
                grids = {"clean": x[:k], "preds_clean": pred[:k], "adv": {}, "preds_adv": {}}
        succ_of: dict[tuple[str, float], torch.Tensor] = {}
        for j, (name, e) in enumerate(keys):
            atk = variants[name][e]
            with timers[(name, e)](), autocast():
                x_adv = atk(model, x, y, target=t)
            with torch.no_grad(), autocast():
                pa = model(x_adv).argmax(1)
            fooled = correct & (pa != y)
            hit = correct & (pa == t) if t is not None else None
            succ_of[(name, e)] = fooled if hit is None else hit  # what the attack was asked to do
            hits = hit.sum() if hit is not None else torch.zeros((), dtype=torch.long, device=dev)
            counts[j] += torch.stack([fooled.sum(), (pa == y).sum(), hits])
            d = (x_adv - x).flatten(1).float()
            linf, l2 = d.abs().amax(1), d.norm(dim=1)
            norms[j, 0] += linf.sum()
            norms[j, 1] = torch.maximum(norms[j, 1], linf.max())
            norms[j, 2] += l2.sum()
            norms[j, 3] = torch.maximum(norms[j, 3], l2.max())
            if i == 0 and grid_images and e == float(next(iter(variants[name]))):
                grids["adv"][name] = x_adv[: grids["clean"].shape[0]]
                grids["preds_adv"][name] = pa[: grids["clean"].shape[0]]
        for p, (pgd_name, fgsm_name, e) in enumerate(pairs):
            pair_counts[p] += (succ_of[(fgsm_name, e)] & ~succ_of[(pgd_name, e)]).sum()
        if i == 0 and crosscheck and not targeted:
            for k, v in run_foolbox_crosscheck(model, variants, x, y, correct, succ_of).items():
                (deferred if isinstance(v, torch.Tensor) else deferred_names)[k] = v
        n += x.shape[0]
        batches += 1
    wall = time.perf_counter() - t_start
    seconds = [timers[k].total() for k in keys]
    counts, norms, n_correct, finite, seconds, n, batches, wall = reduce_results(
        counts, norms, n_correct, finite, pair_counts, seconds, n, batches, wall)
    if n == 0:
        raise ValueError("the loader yielded no batches; evaluate needs at least one (images, labels) batch.")
    if world()[1] > 1:  # batch 0's sanity checks and grids, from rank 0
        first = share_first_batch({"sanity": sanity, "deferred": {k: v.cpu() for k, v in deferred.items()},
                                   "names": deferred_names, "shape": sample_shape, "grids": _grids_cpu(grids)})
        sanity, deferred_names, sample_shape, grids = first["sanity"], first["names"], first["shape"], first["grids"]
        deferred = {k: v.to(dev) for k, v in first["deferred"].items()}

    # ---- the one host read of everything accumulated on the device
    dnames = sorted(deferred)
    flat = torch.cat([n_correct.view(1).float(), finite.view(1).float(), counts.flatten().float(), norms.flatten(),
                      pair_counts.float()] + [deferred[k].float().view(-1) for k in dnames]).double().cpu().tolist()
    n_ok, all_finite = int(flat[0]), bool(flat[1])
    c = flat[2: 2 + 3 * len(keys)]
    m = flat[2 + 3 * len(keys): 2 + 7 * len(keys)]
    pc = flat[2 + 7 * len(keys): 2 + 7 * len(keys) + pair_counts.numel()]
    rest = flat[2 + 7 * len(keys) + pair_counts.numel():]
    for k, v in zip(dnames, rest):
        sanity[k] = v
    if "crosscheck_pgd_name" in deferred_names:
        sanity["crosscheck_pgd_name"] = deferred_names["crosscheck_pgd_name"]
    results: dict[str, dict[float, AttackResult]] = {name: {} for name in variants}
    for j, (name, e) in enumerate(keys):
        atk = variants[name][e]
        desc = atk.describe() if hasattr(atk, "describe") else {"repr": repr(atk)}
        results[name][e] = AttackResult(
            name=name, eps=e, norm=atk.norm, n=n, n_correct=n_ok, n_fooled=int(c[3 * j]), n_robust=int(c[3 * j + 1]),
            n_target_hits=int(c[3 * j + 2]) if targeted else None, mean_linf=m[4 * j] / n, max_linf=m[4 * j + 1],
            mean_l2=m[4 * j + 2] / n, max_l2=m[4 * j + 3], seconds=seconds[j], attack=desc)
    own = {name: float(next(iter(vs))) for name, vs in variants.items()}
    flags: list[str] = [] if all_finite else ["the model produced NaN/Inf logits on clean inputs."]
    if sanity_checks:
        flags += post_checks(results, variants, sanity, pairs, pc, n_ok, sample_shape)
    meta = {"device": str(dev), "amp": amp, "channels_last": channels_last, "targeted": targeted, "seed": seed,
            "batches": batches, "wall_seconds": wall, "model": type(model).__name__,
            "arch": getattr(model, "arch", None), "world_size": world()[1]}
    grids = _grids_cpu(grids)
    return Report(n=n, n_correct=n_ok, results=results, own_eps=own, flags=flags, sanity=sanity, meta=meta, grids=grids)


def _grids_cpu(grids: dict[str, Any]) -> dict[str, Any]:
    if not grids:
        return grids
    return {"clean": grids["clean"].cpu(), "preds_clean": grids["preds_clean"].cpu(),
            "adv": {k: v.cpu() for k, v in grids["adv"].items()},
            "preds_adv": {k: v.cpu() for k, v in grids["preds_adv"].items()}}
