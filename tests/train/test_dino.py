import torch

from model.config import ModelConfig
from train.config import DinoConfig
from train.dino import DinoHead, DinoModule, MultiCrop, collate_crops, cosine_momentum, dino_loss
from train.modelling import build_encoder

SMALL = dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, n_local_crops=2)


def _module(**overrides):
    enc = ModelConfig.from_preset("tiny").encoder
    torch.manual_seed(0)
    return DinoModule(build_encoder(enc), enc.d_slice, DinoConfig(**{**SMALL, **overrides}), total_steps=10), enc


def _batch(enc, cfg, n=4):
    crop = MultiCrop(cfg, enc.image_size, enc.patch_size)
    images = torch.randn(n, 3, enc.image_size, enc.image_size)
    return collate_crops([crop(img, torch.Generator().manual_seed(i)) for i, img in enumerate(images)])


def test_student_loss_falls_on_a_fixed_batch():
    # Teacher and centre frozen (momenta 1), so the objective is stationary and must go down.
    module, enc = _module(momentum_start=1.0, momentum_end=1.0, center_momentum=1.0)
    # A student head unlike the teacher's, so step 0 is not already the teacher's own answer.
    module.student["head"] = DinoHead(enc.d_slice, 64, 32, 16)
    batch = _batch(enc, module.cfg)
    assert batch["global"].shape == (8, 3, 32, 32) and batch["local"].shape == (8, 3, 16, 16)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(8):
        loss = module(batch, step)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        module.update_teacher(step + 1)
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1e-3, losses
    # The teacher never receives gradients.
    assert all(p.grad is None for p in module.teacher.parameters())


def test_teacher_is_an_ema_of_the_student_and_the_centre_moves():
    module, enc = _module(momentum_start=0.9, momentum_end=0.9, center_momentum=0.5)
    with torch.no_grad():
        for p in module.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in module.teacher.parameters()]
    student = [p.clone() for p in module.student.parameters()]
    module.update_teacher(3)
    for t_old, s, t_new in zip(before, student, module.teacher.parameters(), strict=True):
        torch.testing.assert_close(t_new, 0.9 * t_old + 0.1 * s)
    batch = _batch(enc, module.cfg)
    module(batch, 0)
    with torch.no_grad():
        teacher_mean = module._embed(module.teacher, batch["global"]).mean(0, keepdim=True)
    torch.testing.assert_close(module.center, 0.5 * teacher_mean, rtol=1e-4, atol=1e-5)


def test_loss_skips_same_view_pairs_and_momentum_schedule():
    k, b = 5, 3
    teacher = torch.randn(2 * b, k)
    student = torch.cat([teacher, torch.randn(2 * b, k)])  # 4 views
    center = torch.zeros(1, k)
    loss = dino_loss(student, teacher, center, 2, 1.0, 1.0)
    q = teacher.softmax(-1).chunk(2)
    s = student.log_softmax(-1).chunk(4)
    pairs = [(i, j) for i in range(2) for j in range(4) if i != j]
    expected = sum(-(q[i] * s[j]).sum(-1).mean() for i, j in pairs) / len(pairs)
    torch.testing.assert_close(loss, expected)
    assert cosine_momentum(0, 100, 0.996, 1.0) == 0.996 and cosine_momentum(100, 100, 0.996, 1.0) == 1.0


def test_crops_are_reproducible_from_the_seed():
    cfg = DinoConfig(**SMALL)
    crop = MultiCrop(cfg, 32, 8)
    image = torch.randn(3, 32, 32)
    a = crop(image, torch.Generator().manual_seed(7))
    b = crop(image, torch.Generator().manual_seed(7))
    c = crop(image, torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1], strict=True))
    assert not torch.equal(a[0][0], c[0][0])
