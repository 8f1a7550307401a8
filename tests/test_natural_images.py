"""The natural-image path: 3-channel inputs through random-init timm models (32 px, and a fixed-size ViT at 224
with the resize inside ``Classifier``), AdvGAN training / targeted / black-box / evaluate / finetune on them,
the generator's size rule, and the channel refusals. CPU-sized: a few dozen 32x32 images."""
from __future__ import annotations

import pytest
import torch

from advgan.attacker import AdvGAN, AdvGANConfig, BlackBox, BlackBoxAdvGAN, GeneratorAttack, build_generator, generator_shape
from advgan.data import ImageDataset
from attacks import PGD, Classifier, ThreatModel, evaluate

pytest.importorskip("timm")
FAST = dict(progress=False, device="cpu", batch_size=16, seed=0)
EPS = 8 / 255


def _tinted_digits(mnist, n: int) -> torch.Tensor:
    """``n`` MNIST digits at 32x32, each tinted with its own random colour (3 distinct channels)."""
    train, _ = mnist
    x = torch.nn.functional.interpolate(train.images[:n], size=32, mode="bilinear", align_corners=False)
    colour = torch.rand(n, 3, 1, 1, generator=torch.Generator().manual_seed(0)) * 0.7 + 0.3
    background = torch.rand(n, 3, 1, 1, generator=torch.Generator().manual_seed(1)) * 0.3
    return (background + x * colour).clamp(0, 1)


def _labelled(clf: Classifier, x: torch.Tensor) -> ImageDataset:
    """The model's own labels (a random-init model is then 'right' on every input; ASR is 'prediction changed')."""
    with torch.no_grad():
        return ImageDataset(x, clf(x).argmax(1), 10, "tinted")


@pytest.fixture(scope="module")
def rgb32(mnist):
    torch.manual_seed(0)
    clf = Classifier.from_timm("resnet10t", 10, in_chans=3, pretrained=False)
    return clf, _labelled(clf, _tinted_digits(mnist, 48))


def test_timm_32px_untargeted_targeted_and_blackbox(rgb32):
    clf, ds = rgb32
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    atk = AdvGAN(clf, AdvGANConfig(eps=EPS, **FAST))
    hist = atk.fit(ds, 1, val_loader=ds)
    x = ds.images[:16]
    x_adv = atk.as_attack()(clf, x, ds.labels[:16])
    assert x_adv.shape == (16, 3, 32, 32) and bool(ThreatModel("linf", EPS).contains(x, x_adv).all())
    delta = x_adv - x
    assert float((delta[:, 0] - delta[:, 1]).abs().mean()) > 1e-4  # a colour perturbation, not one grey map
    assert {"val_asr", "val_shared_energy", "val_adv_class_entropy"} <= set(hist.epochs[-1])
    assert all(torch.equal(before[k], v) for k, v in clf.state_dict().items())  # the target stays frozen

    tat = AdvGAN(clf, AdvGANConfig(eps=EPS, targeted=True, **FAST))
    tat.fit(ds, 1)
    t = (ds.labels[:16] + 1) % 10
    assert bool(ThreatModel("linf", EPS).contains(x, tat.as_attack()(clf, x, ds.labels[:16], target=t)).all())

    bb = BlackBox(clf)
    bba = BlackBoxAdvGAN(bb, AdvGANConfig(eps=EPS, **FAST), mode="static", surrogate="small_cnn", surrogate_epochs=1)
    bba.fit(ds, 1)
    assert bba.queries["distillation"] == len(ds)
    assert bba.as_attack()(clf, x, ds.labels[:16]).shape == (16, 3, 32, 32)


def test_evaluate_and_finetune_on_3_channel_data(rgb32):
    from defenses import FinetuneConfig, finetune

    clf, ds = rgb32
    atk = AdvGAN(clf, AdvGANConfig(eps=EPS, **FAST))
    atk.fit(ds, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ds.images, ds.labels), batch_size=24)
    rep = evaluate(clf, loader, {"advgan": atk.as_attack(), "pgd": PGD(EPS, steps=3, seed=0)}, epsilons=[EPS], progress=False)
    for name in ("advgan", "pgd"):
        r = rep[name]
        assert r.n == 48 and r.max_linf <= EPS + 1e-6 and 0 < r.shared_energy <= 1
    robust, hist = finetune(clf, ds, FinetuneConfig(method="augment", epochs=1, eps=EPS, batch_size=16, device="cpu",
                                                    progress=False), sources=[atk.as_attack()])
    assert robust.data_chans == 3 and len(hist.epochs) == 1
    changed = any(not torch.equal(a, b) for a, b in zip(robust.state_dict().values(), clf.state_dict().values()))
    assert changed, "fine-tuning on the 3-channel data did not change the copy"


def test_fixed_size_vit_at_224_resizes_inside_the_classifier(mnist):
    torch.manual_seed(0)
    vit = Classifier.from_timm("vit_tiny_patch16_224", 10, in_chans=3, pretrained=False, depth=2)  # 2 blocks: CPU-sized
    assert vit.input_size == (224, 224)  # timm's fixed-size config, picked up by input_size="auto"
    same = Classifier(vit.module, 10, mean=vit.mean.flatten().tolist(), std=vit.std.flatten().tolist(), input_size=224)
    x = _tinted_digits(mnist, 8)
    with torch.no_grad():
        assert torch.equal(vit(x), same(x)) and vit(x).shape == (8, 10)
    ds = _labelled(vit, x)
    atk = AdvGAN(vit, AdvGANConfig(eps=EPS, **dict(FAST, batch_size=8)))
    g0 = {k: v.clone() for k, v in atk.G.state_dict().items()}
    atk.fit(ds, 1)
    assert any(not torch.equal(g0[k], v) for k, v in atk.G.state_dict().items())  # gradients reached G through the resize
    x_adv = atk.perturb(x)
    assert x_adv.shape == x.shape and bool(ThreatModel("linf", EPS).contains(x, x_adv).all())


def test_generator_size_rule_scales_with_resolution():
    assert generator_shape(8, None) == generator_shape(8, 32) == (8, 2)  # the paper's net up to 64 px
    assert generator_shape(8, 96) == (16, 3) and generator_shape(8, 224) == (16, 4)
    G = build_generator(AdvGANConfig(image_size=224), 3, 10)
    assert (G.width, G.n_down) == (16, 4)
    with torch.no_grad():
        assert G(torch.rand(1, 3, 224, 224)).shape == (1, 3, 224, 224)
        assert G(torch.rand(1, 3, 100, 90)).shape == (1, 3, 100, 90)  # padded to a multiple of 16 and cropped back


def test_channel_mismatches_and_255_scale_eps_are_refused(rgb32, trained_tiny_clf, tmp_path):
    clf3, ds = rgb32
    gray = AdvGAN(trained_tiny_clf, AdvGANConfig(eps=0.3, **FAST))
    gray.save(tmp_path / "gray")
    files = sorted(p.name for p in (tmp_path / "gray").iterdir())
    with pytest.raises(ValueError, match=r"1 channel\(s\); this classifier has 10 classes and 3 channel\(s\)"):
        AdvGAN.load(tmp_path / "gray", clf3)
    assert sorted(p.name for p in (tmp_path / "gray").iterdir()) == files
    atk = gray.as_attack()
    assert isinstance(atk, GeneratorAttack)
    with pytest.raises(ValueError, match="1-channel perturbations, but the images have 3"):
        atk(clf3, ds.images[:4], ds.labels[:4])
    with pytest.raises(ValueError, match="255"):
        AdvGANConfig(eps=8)
