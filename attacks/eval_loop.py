"""The batch loop of ``evaluate()``: every attack at every budget (and every corruption at every severity)
on every batch, counted on the device.

Per batch: validate, seed, classify, run each (attack, eps), screen its output (``attacks.verify``),
classify the adversarials, and fold counts, norms, SSIM and the per-sample worst case into an
``Accumulator`` (no host sync of our own; attacks such as early-stopping PGD may sync internally).
At the end the totals are reduced over ranks and read to the host once.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from .accumulator import Accumulator
from .base import NonDifferentiableWarning, autograd_enabled, normal_tensor, random_targets
from .checks import check_images, check_labels, compute_dtype, explain_data_error, looks_like_probabilities, unpack_pair
from .classifier import data_chans_of
from .corruption_results import CorruptionPlan
from .corruptions import corrupt
from .diagnostics import PerturbationStats
from .eval_plan import AttackPlan, EvalOptions
from .eval_results import build_report, corruption_key, key_prefix, worst_prefix
from .grids import ClassGrid
from .report import Report
from .sanity import forward_differs, run_foolbox_crosscheck, zero_grad_fraction
from .sharding import rank_batches, share_first_batch, world
from .ssim import ssim
from .verify import check_output_type, screen_output
from .worst import Key, Outcome, combine

_COUNTS = ("fooled", "robust", "hits", "invalid", "nonfinite")
_SUMS = ("sum_linf", "sum_l2", "sum_ssim")
_MAXES = ("max_linf", "max_l2", "worst_norm_excess", "worst_bounds_excess", "seconds")
_WORST_COUNTS = ("robust", "fooled", "hits", "gradient_free_only")
_FIRST_BATCH = ("zero_gradient_fraction", "model_is_randomized")
_CROSSCHECK = ("crosscheck_ours_fooled", "crosscheck_foolbox_fooled", "crosscheck_n_correct")


class _Timer:
    """Accumulates the time of code sections; CUDA events on GPU (read at the end), perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds = 0.0
        self.events: list[tuple[Any, Any]] = []

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self.cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            a.record()
            yield
            b.record()
            self.events.append((a, b))
        else:
            t = time.perf_counter()
            yield
            self.seconds += time.perf_counter() - t

    def total(self) -> float:
        gpu: float = sum(a.elapsed_time(b) for a, b in self.events) / 1000.0
        return self.seconds + gpu


def _unpack(batch: object, i: int) -> tuple[Any, Any]:
    return unpack_pair(batch, f"batch {i} of the loader")


def declare_totals(plan: AttackPlan, device: torch.device) -> Accumulator:
    """Every total the loop keeps, by name (the same on every rank)."""
    acc = Accumulator(device)
    acc.declare_many(("n", "batches", "n_correct", "nonfinite_logit_batches"), "sum", torch.long)
    acc.declare("wall", "max")
    for key in plan.keys:
        p = key_prefix(key)
        acc.declare_many((p + c for c in _COUNTS), "sum", torch.long)
        acc.declare_many((p + c for c in _SUMS), "sum")
        acc.declare_many((p + c for c in _MAXES), "max")
    for g in plan.groups:
        p = worst_prefix(g)
        acc.declare_many((p + c for c in _WORST_COUNTS), "sum", torch.long)
        acc.declare_many((p + c for c in _SUMS), "sum")
        acc.declare_many((p + c for c in ("max_linf", "max_l2")), "max")
    acc.declare_many((f"pair:{p}|{f}@{e!r}" for p, f, e in plan.pairs), "sum", torch.long)
    acc.declare_many(_FIRST_BATCH, "max")  # only batch 0 contributes (on rank 0); -inf elsewhere
    acc.declare_many(_CROSSCHECK, "sum", torch.long)
    return acc


def declare_corruption_totals(acc: Accumulator, plan: CorruptionPlan | None) -> None:
    """One correct count per (corruption, severity) and one time per corruption."""
    if plan is None:
        return
    acc.declare_many((corruption_key(name, s) for _, name, s in plan.cells), "sum", torch.long)
    acc.declare_many((f"corruption:{name}/seconds" for name in plan.names), "max")


class Evaluation:
    """State of one ``evaluate()`` run: the accumulator, timers, grid and first-batch checks."""

    def __init__(self, model: nn.Module, plan: AttackPlan, opts: EvalOptions) -> None:
        self.model, self.plan, self.opts = model, plan, opts
        self.chans = data_chans_of(model)
        self.dtype = compute_dtype(model)
        self.tgen = torch.Generator().manual_seed(opts.seed)
        self.acc = declare_totals(plan, opts.device)
        declare_corruption_totals(self.acc, opts.corruptions)
        self.timers = {k: _Timer(opts.device) for k in plan.keys}
        self.corruption_timers = {c: _Timer(opts.device) for c in (opts.corruptions.names if opts.corruptions else ())}
        self.grid = ClassGrid(opts.grid_images)
        # shared energy and adversarial-class entropy per (attack, eps) (a per-pixel sum each: not in the accumulator)
        nc = opts.num_classes
        self.stats = {k: PerturbationStats(nc) for k in plan.keys} if isinstance(nc, int) and nc >= 2 else {}
        self.first: dict[str, Any] = {"sanity": {}, "shape": None}  # what batch 0 found (shared from rank 0)
        self.n, self.batches = 0, 0

    def run(self, loader: Iterable[Any]) -> Report:
        from tqdm.auto import tqdm

        o = self.opts
        total = min(o.n_batches, o.max_batches) if o.n_batches is not None and o.max_batches else (o.n_batches or o.max_batches)
        t_start = time.perf_counter()
        batches, mine = rank_batches(loader, o.max_batches)  # (global index, batch): this rank's share
        with explain_data_error("a batch of the loader"):
            for i, batch in tqdm(batches, total=mine or total, desc="evaluate", disable=not o.progress or world()[0] != 0,
                                 leave=False):
                self.batch(i, batch)
        return self.finish(time.perf_counter() - t_start)

    # ------------------------------------------------------------------ one batch
    def _prepare(self, i: int, batch: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[tuple[int, int]]]:
        o = self.opts
        x, y = _unpack(batch, i)
        x = check_images(x, name=f"images of batch {i}", channels=self.chans)
        y = check_labels(y, x.shape[0], o.num_classes, name=f"labels of batch {i}")
        x, y = normal_tensor(x.to(dtype=self.dtype)), normal_tensor(y)  # the dtype policy (attacks.checks)
        torch.manual_seed(o.seed * 100_003 + i)  # per-batch seeds: the same on any number of ranks
        self.tgen.manual_seed(o.seed * 100_003 + i)
        t = random_targets(y.cpu(), o.num_classes, self.tgen) if o.targeted and o.num_classes else None
        picks = self.grid.wanted(y)
        x = x.to(o.device, non_blocking=True)
        if o.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(o.device, non_blocking=True)
        return x, y, (t.to(o.device, non_blocking=True) if t is not None else None), picks

    def batch(self, i: int, batch: object) -> None:
        x, y, t, picks = self._prepare(i, batch)
        with torch.no_grad(), self.opts.autocast():
            logits = self.model(x)
        nc = self.opts.num_classes
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or (nc is not None and logits.shape[1] != nc):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"the model returned shape {shape}; it must return (N, num_classes) logits.")
        pred = logits.argmax(1)
        correct = pred == y
        self.acc.add("n_correct", correct.sum())
        self.acc.add("nonfinite_logit_batches", (~torch.isfinite(logits).all()).long())
        if i == 0:
            self._first_batch(x, y, logits)
        self.grid.take(i, picks, x, pred)
        outcomes = {key: self._attack(key, x, y, t, correct, picks) for key in self.plan.keys}
        for g in self.plan.groups:
            w = combine(g, outcomes, self.plan.traits, correct)
            p = worst_prefix(g)
            for c in _WORST_COUNTS:
                if c in w:
                    self.acc.add(p + c, w[c].sum())
            self._norms(p, w["linf"], w["l2"], w["ssim"])
        for pgd, fgsm, e in self.plan.pairs:
            self.acc.add(f"pair:{pgd}|{fgsm}@{e!r}", (outcomes[(fgsm, e)].success & ~outcomes[(pgd, e)].success).sum())
        if i == 0 and self.opts.crosscheck and not self.opts.targeted:
            name, counts = run_foolbox_crosscheck(self.model, self.plan.variants, x, y, correct,
                                                  {k: o.success for k, o in outcomes.items()})
            self.first["sanity"]["crosscheck_pgd_name"] = name
            for k, v in counts.items():
                self.acc.add(k, v)
        self._corruptions(i, x, y)
        self.n += x.shape[0]
        self.batches += 1

    def _first_batch(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> None:
        self.first["shape"] = tuple(x.shape[1:])
        if not self.opts.sanity_checks:
            return
        self.first["sanity"]["outputs_look_like_probabilities"] = looks_like_probabilities(logits)
        with self.opts.autocast(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NonDifferentiableWarning)
            self.acc.update("zero_gradient_fraction", zero_grad_fraction(self.model, x, y))
        for w in caught:
            if issubclass(w.category, NonDifferentiableWarning):
                self.first["sanity"]["model_not_differentiable"] = True
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        with self.opts.autocast():
            self.acc.update("model_is_randomized", forward_differs(self.model, x, logits))

    def _norms(self, p: str, linf: torch.Tensor, l2: torch.Tensor, ss: torch.Tensor) -> None:
        self.acc.add(p + "sum_linf", linf.sum())
        self.acc.update(p + "max_linf", linf)
        self.acc.add(p + "sum_l2", l2.sum())
        self.acc.update(p + "max_l2", l2)
        self.acc.add(p + "sum_ssim", ss.sum())

    def _attack(self, key: Key, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None, correct: torch.Tensor,
                picks: list[tuple[int, int]]) -> Outcome:
        """Run one (attack, eps) on the batch, screen its output and count it."""
        name, e = key
        with self.timers[key](), self.opts.autocast():
            out = self.plan.variants[name][e](self.model, x, y, target=t)
        screened = screen_output(self.plan.traits[key].threat, x, check_output_type(name, x, out))
        x_adv = screened.x_adv
        with torch.no_grad(), self.opts.autocast():
            pa = self.model(x_adv).argmax(1)
        fooled = correct & (pa != y)
        hit = correct & (pa == t) if t is not None else None
        robust = pa == y
        d = (x_adv - x).flatten(1).float()
        linf, l2, ss = d.abs().amax(1), d.norm(dim=1), ssim(x, x_adv)
        if key in self.stats:
            self.stats[key].update(d, pa, fooled)
        p = key_prefix(key)
        for c, v in (("fooled", fooled), ("robust", robust), ("invalid", screened.invalid), ("nonfinite", screened.nonfinite)):
            self.acc.add(p + c, v.sum())
        if hit is not None:
            self.acc.add(p + "hits", hit.sum())
        self._norms(p, linf, l2, ss)
        zero = torch.zeros_like(screened.norm_excess)
        self.acc.update(p + "worst_norm_excess", torch.where(screened.invalid, screened.norm_excess, zero))
        self.acc.update(p + "worst_bounds_excess", torch.where(screened.invalid, screened.bounds_excess, zero))
        if picks and e == self.plan.own[name]:
            self.grid.take_adv(picks, name, x_adv, pa)
        return Outcome(fooled if hit is None else hit, robust, hit, linf, l2, ss)

    def _corruptions(self, i: int, x: torch.Tensor, y: torch.Tensor) -> None:
        """Each (corruption, severity) of the plan on the whole batch: one corrupt() and one forward pass each.

        Seeds depend on (seed, global batch index, corruption, severity) only: the same corrupted images for
        every model evaluated on the same loader and seed, on any number of ranks."""
        plan = self.opts.corruptions
        if plan is None:
            return
        for ci, name, s in plan.cells:
            with self.corruption_timers[name]():
                xc = corrupt(x, name, s, seed=((self.opts.seed * 100_003 + i) * 64 + ci) * 8 + s)
                if self.opts.channels_last:
                    xc = xc.contiguous(memory_format=torch.channels_last)
                with torch.no_grad(), self.opts.autocast():
                    pc = self.model(xc).argmax(1)
                self.acc.add(corruption_key(name, s), (pc == y).sum())

    # ------------------------------------------------------------------ the end
    def finish(self, wall: float) -> Report:
        for key, timer in self.timers.items():
            self.acc.update(key_prefix(key) + "seconds", timer.total())
        for name, timer in self.corruption_timers.items():
            self.acc.update(f"corruption:{name}/seconds", timer.total())
        self.acc.add("n", self.n)
        self.acc.add("batches", self.batches)
        self.acc.update("wall", wall)
        self.acc.all_reduce()
        first = share_first_batch(self.first)  # batch 0's host-side findings, from rank 0
        for st in self.stats.values():
            st.all_reduce()
        values = self.acc.read()  # the one host read
        for key, st in self.stats.items():
            values.update({key_prefix(key) + k: v for k, v in st.result().items() if k != "max_entropy"})
        if values["n"] == 0:
            raise ValueError("the loader yielded no batches; evaluate needs at least one (images, labels) batch.")
        grids = self.grid.as_dict(self.plan.variants)
        return build_report(values, self.plan, self.opts, first, grids, self.model)


def run_evaluation(model: nn.Module, loader: Iterable[Any], plan: AttackPlan, opts: EvalOptions) -> Report:
    """Evaluate ``model`` on ``loader`` under every attack of ``plan`` (the model is already frozen and placed).

    Runs with autograd on even under ``torch.inference_mode()`` (the attacks need input gradients)."""
    with autograd_enabled():
        return Evaluation(model, plan, opts).run(loader)


__all__ = ["Evaluation", "declare_totals", "run_evaluation"]
