"""DDP on CPU with gloo: 2 processes (torch.multiprocessing.spawn) run a short AdvGAN fit, classifier
training, a robust fine-tune and sharded evaluations once; the tests compare what they wrote with each
other and with single-process runs (exact evaluation report, identical parameters across ranks,
gradient averaging = the full batch, a 2-rank checkpoint resumed in 1 process)."""
from __future__ import annotations

import json
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, TensorDataset

from advgan import data
from advgan import distributed as D
from attacks import FGSM, PGD, Classifier, evaluate

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clf() -> Classifier:
    torch.manual_seed(0)
    return Classifier.create("tiny_cnn", 10, in_chans=1)


def _trained_clf(train) -> Classifier:
    """A tiny CNN trained for a few steps (deterministic; the same in every process)."""
    from advgan.training import train_classifier

    clf, _ = train_classifier(_clf(), train, epochs=1, batch_size=64, progress=False, device="cpu", lr=5e-3)
    return clf


def _subsets():
    train, test = data.load("mnist5k")
    return (data.ImageDataset(train.images[:512], train.labels[:512], 10, "tr"),
            data.ImageDataset(test.images[:200], test.labels[:200], 10, "te"))


def _attacks(atk=None):
    out = {"fgsm": FGSM(eps=0.1), "pgd": PGD(eps=0.1, steps=3)}  # PGD: random start from the global RNG
    if atk is not None:
        out["advgan"] = atk.as_attack()
    return out


_FIELDS = ("n", "n_correct", "n_fooled", "n_robust", "n_target_hits", "mean_linf", "max_linf", "mean_l2", "max_l2",
           "mean_ssim", "n_invalid")


def _summary(rep) -> dict:
    res = {f"{name}@{e:g}": {k: getattr(r, k) for k in _FIELDS} for name, curve in rep.results.items() for e, r in curve.items()}
    res["worst case"] = {k: getattr(rep.worst_case(), k) for k in _FIELDS}  # per-rank masks, summed counts
    return {"n": rep.n, "n_correct": rep.n_correct, "results": res, "flags": rep.flags,
            "sanity": json.loads(json.dumps(rep.sanity, default=str)), "batches": rep.meta["batches"],
            "grid": None if not rep.grids else [rep.grids["clean"].sum().item(), rep.grids["labels"].tolist()]}


def _evaluations(clf, test, atk) -> dict:
    loader = data.loader(test, 32, shuffle=False)  # 7 batches: an uneven 4 / 3 split over 2 ranks
    return {"untargeted": _summary(evaluate(clf, loader, _attacks(atk), epsilons=[0.05], progress=False)),
            "targeted": _summary(evaluate(clf, loader, _attacks(), targeted=True, progress=False, max_batches=5))}


def _worker(rank: int, port: int, out: str) -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        _work(rank, Path(out))
    finally:
        dist.destroy_process_group()


def _work(rank: int, out: Path) -> None:
    from advgan.attacker import AdvGAN, AdvGANConfig
    from advgan.training import train_classifier
    from defenses import FinetuneConfig, finetune

    info = D.init_from_env()
    res: dict = {"info": [info.rank, info.world_size]}
    train, test = _subsets()
    clf = _trained_clf(train)  # under DDP too: each rank trained on its half, then synchronised
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(out / f"clf{rank}.safetensors"))

    # AdvGAN: the frozen classifier is not wrapped, gets no gradients and stays bit-identical
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    for p in clf.parameters():
        p.grad = None  # (left over from its own training)
    atk = AdvGAN(clf, AdvGANConfig(eps=0.3, width=4, batch_size=32, progress=False, device="cpu"))
    hist = atk.fit(torch.utils.data.Subset(train, range(256)), epochs=1, out_dir=out / "advgan")
    res["advgan_steps"] = len(hist.steps)
    res["clf_unchanged"] = all(torch.equal(before[k], v) for k, v in clf.state_dict().items())
    res["clf_no_grad"] = all(p.grad is None and not p.requires_grad for p in clf.parameters())
    res["nets_unwrapped"] = [type(n).__name__ for n in atk.game.nets.values()]
    save_file({f"{n}.{k}": v.contiguous() for n in ("G", "D") for k, v in getattr(atk, n).state_dict().items()},
              str(out / f"advgan{rank}.safetensors"))

    # gradient averaging: 2 ranks x 16 items per step == 1 process x 32 items (no shuffling, no BatchNorm)
    small = DataLoader(TensorDataset(train.images[:64], train.labels[:64]), batch_size=16, shuffle=False)
    c2, _ = train_classifier(_clf(), small, epochs=1, progress=False, device="cpu")
    save_file({k: v.contiguous() for k, v in c2.state_dict().items()}, str(out / f"avg{rank}.safetensors"))

    # robust fine-tuning: adversarial examples against the raw (unwrapped) classifier
    robust, fh = finetune(clf, data.loader(torch.utils.data.Subset(train, range(128)), 32, shuffle=True),
                          FinetuneConfig(method="pgd-at", epochs=1, pgd_steps=2, progress=False, device="cpu", val_batches=1),
                          val_loader=data.loader(test, 64))
    res["finetune_steps"] = len(fh.steps)
    res["finetune_caller_unchanged"] = all(torch.equal(before[k], v) for k, v in clf.state_dict().items())
    save_file({k: v.contiguous() for k, v in robust.state_dict().items()}, str(out / f"ft{rank}.safetensors"))
    # AWP: the w + v forward runs through the DDP wrapper, so the gradients are still averaged over the ranks
    awp, _ = finetune(clf, data.loader(torch.utils.data.Subset(train, range(128)), 32, shuffle=True),
                      FinetuneConfig(method="awp", awp_gamma=0.01, epochs=1, pgd_steps=2, progress=False, device="cpu"))
    save_file({k: v.contiguous() for k, v in awp.state_dict().items()}, str(out / f"awp{rank}.safetensors"))

    res["eval"] = _evaluations(clf, test, atk)
    (out / f"rank{rank}.json").write_text(json.dumps(res))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture()
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks ran with one thread each: the same kernels
    yield
    torch.set_num_threads(n)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ranks_end_with_identical_parameters(ddp_run):
    out, ranks = ddp_run
    assert [r["info"][:2] for r in ranks] == [[0, WORLD], [1, WORLD]]
    for name in ("clf", "advgan", "avg", "ft", "awp"):
        a, b = (load_file(str(out / f"{name}{r}.safetensors")) for r in range(WORLD))
        assert _same(a, b), name
    assert not D.current().active  # the test process itself has no process group


def test_advgan_fit_under_ddp(ddp_run):
    out, ranks = ddp_run
    for r in ranks:
        assert r["advgan_steps"] == 256 // 32 // WORLD  # each rank steps through its half of the data
        assert r["clf_unchanged"] and r["clf_no_grad"]
        assert r["nets_unwrapped"] == ["ConvDiscriminator", "ResNetGenerator"]
    assert (out / "advgan" / "checkpoint" / "checkpoint.safetensors").is_file()
    assert (out / "advgan" / "weights.safetensors").is_file() or any((out / "advgan").glob("*.safetensors"))


def test_ddp_gradient_is_the_full_batch_gradient(ddp_run, one_thread):
    from advgan.training import train_classifier

    out, _ = ddp_run
    train, _ = _subsets()
    full = DataLoader(TensorDataset(train.images[:64], train.labels[:64]), batch_size=32, shuffle=False)
    c1, _ = train_classifier(_clf(), full, epochs=1, progress=False, device="cpu")
    ddp = load_file(str(out / "avg0.safetensors"))
    init = _clf().state_dict()
    for k, v in c1.state_dict().items():
        assert not torch.equal(v, init[k])  # it trained
        torch.testing.assert_close(ddp[k], v, rtol=1e-4, atol=1e-6)


def test_finetune_under_ddp(ddp_run):
    _, ranks = ddp_run
    for r in ranks:
        assert r["finetune_steps"] == 128 // 32 // WORLD
        assert r["finetune_caller_unchanged"]


def test_sharded_evaluation_equals_single_process(ddp_run, one_thread):
    from advgan.attacker import AdvGAN

    out, ranks = ddp_run
    assert ranks[0]["eval"] == ranks[1]["eval"]  # every rank returns the same report
    train, test = _subsets()
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)
    clf.load_state_dict(load_file(str(out / "clf0.safetensors")))
    clf.freeze()
    atk = AdvGAN.load(out / "advgan", clf)
    single = json.loads(json.dumps(_evaluations(clf, test, atk)))
    dd = ranks[0]["eval"]
    assert dd["untargeted"]["batches"] == single["untargeted"]["batches"] == 7
    for kind in ("untargeted", "targeted"):
        assert dd[kind]["results"] == single[kind]["results"], kind  # counts and norms, exactly
        assert dd[kind] == single[kind], kind
    assert single["targeted"]["results"]["pgd@0.1"]["n_target_hits"] is not None


def test_checkpoint_of_two_ranks_resumes_in_one(ddp_run, tmp_path):
    import shutil

    from advgan.attacker import AdvGAN, AdvGANConfig

    out, _ = ddp_run
    shutil.copytree(out / "advgan", tmp_path / "advgan")
    meta = json.loads(__import__("safetensors").safe_open(str(out / "advgan" / "checkpoint" / "checkpoint.safetensors"),
                                                          "pt").metadata()["json"])
    assert meta["world_size"] == WORLD and meta["state"]["epoch"] == 1
    train, _ = _subsets()
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)
    clf.load_state_dict(load_file(str(out / "clf0.safetensors")))
    clf.freeze()
    atk = AdvGAN(clf, AdvGANConfig(eps=0.3, width=4, batch_size=32, progress=False, device="cpu"))
    sub = torch.utils.data.Subset(train, range(256))
    h = atk.fit(sub, epochs=1, out_dir=tmp_path / "advgan")  # already done: loads the 2-rank weights, trains nothing
    two = load_file(str(out / "advgan0.safetensors"))
    assert _same({f"G.{k}": v for k, v in atk.G.state_dict().items()}, {k: v for k, v in two.items() if k.startswith("G.")})
    assert len(h.epochs) == 1
    h = atk.fit(sub, epochs=2, out_dir=tmp_path / "advgan")  # the second epoch in one process: 8 steps
    assert len(h.epochs) == 2 and h.epochs[-1]["step"] == 256 // 32 // WORLD + 256 // 32


def test_shard_loader_is_identity_without_group():
    train, _ = _subsets()
    loader = data.loader(train, 32)
    assert D.shard_loader(loader) is loader
    assert D.current() == D.DistInfo()
    t = torch.ones(3)
    assert D.all_reduce_sum(t) is t and torch.equal(t, torch.ones(3))


def test_channels_last_and_compile_options_train_on_cpu():
    """The GPU fast-path options run (single process, CPU): channels_last nets and batches, and
    torch.compile of the trained net (``aot_eager`` here: no C++ toolchain needed; True means inductor)."""
    from advgan.training import train_classifier

    train, _ = _subsets()
    small = DataLoader(TensorDataset(train.images[:64], train.labels[:64]), batch_size=32, shuffle=False)
    ref, _ = train_classifier(_clf(), small, epochs=1, progress=False, device="cpu")
    cl, _ = train_classifier(_clf(), small, epochs=1, progress=False, device="cpu", channels_last=True)
    comp, h = train_classifier(_clf(), small, epochs=1, progress=False, device="cpu", compile="aot_eager")
    assert len(h.steps) == 2
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(cl.state_dict()[k], v, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(comp.state_dict()[k], v, rtol=1e-4, atol=1e-5)
    assert type(comp.module).__name__ != "OptimizedModule"  # the returned classifier is the plain module
    with pytest.raises(TypeError, match="compile"):
        from advgan.training import ClassifierConfig

        ClassifierConfig(compile=3)
