"""The hole-fill task: hole masks (random and the engine's bank), the loss on noised cells, clean partial sampling."""

import argparse

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from portrait.errors import PortraitError
from portrait.pipelines import load_pipeline
from portrait.training import commands
from portrait.training.holes import HoleBank, HoleMasks, random_holes, read_hole_bank, resize_holes
from tests.conftest import random_image, tiny_pipeline


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def disc(size=64, radius=0.3):
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    return np.hypot(yy - size / 2, xx - size / 2) <= radius * size


# --- masks ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", [None, "disc"])
def test_random_holes_are_seeded_non_empty_shapes_on_the_outline(head):
    size = 64
    head = disc(size) if head == "disc" else None
    masks = [random_holes(size, np.random.default_rng(seed), head) for seed in range(20)]
    again = [random_holes(size, np.random.default_rng(seed), head) for seed in range(20)]
    assert all(np.array_equal(a, b) for a, b in zip(masks, again))  # deterministic per seed
    assert len({m.tobytes() for m in masks}) == 20  # and different across seeds
    for m in masks:
        assert m.shape == (size, size) and m.dtype == bool
        assert 0 < m.mean() < 0.4
    if head is not None:  # on the head's outline: within a fifth of the side (the head's centre is 0.3 away)
        from scipy import ndimage

        to_outline = np.where(head, ndimage.distance_transform_edt(head), ndimage.distance_transform_edt(~head))
        assert all(to_outline[m].max() <= 0.2 * size for m in masks)


def test_resizing_keeps_every_hole_pixel():
    fine = np.zeros((128, 128), bool)
    fine[45, 70] = True
    coarse = resize_holes(fine, 32)
    assert coarse.sum() == 1 and coarse[45 // 4, 70 // 4]
    assert resize_holes(coarse, 128).sum() == 16 and resize_holes(coarse, 128)[44:48, 68:72].all()
    stack = resize_holes(np.stack([fine, ~fine]), 32)
    assert stack.shape == (2, 32, 32) and stack[1].all()


def test_training_masks_take_the_bank_half_the_time_mirrored_at_random():
    bank = np.zeros((1, 64, 64), bool)
    bank[0, 10:20, 2:9] = True  # an asymmetric mask, at another resolution than training's
    masks = HoleMasks(32, bank)
    rng = np.random.default_rng(0)
    seen = [masks.sample(rng, disc(32)) for _ in range(200)]
    small = resize_holes(bank[0], 32)
    as_is = sum(np.array_equal(m, small) for m in seen)
    mirrored = sum(np.array_equal(m, small[:, ::-1]) for m in seen)
    assert 30 < as_is < 70 and 30 < mirrored < 70  # about a quarter each
    assert all(m.shape == (32, 32) and m.any() for m in seen)
    rng = np.random.default_rng(0)
    assert all(np.array_equal(m, masks.sample(rng, disc(32))) for m in seen)  # deterministic
    assert HoleMasks(32).bank is None and HoleMasks(32).sample(rng).any()  # random masks only


# --- the hole task in the loss ----------------------------------------------------------------------------------


def hole_batch(bsz=4, size=32):
    g = seeded(0)
    batch = {k: torch.rand(bsz, c, size, size, generator=g) * 2 - 1 for k, c in (("rgb", 3), ("depth", 1), ("reference", 3))}
    holes = torch.zeros(bsz, 1, size, size)
    holes[:, :, 8:18, 10:22] = 1
    holes[1, :, 26, 5] = 1
    batch["holes"] = holes
    return batch


class Spy:
    """The denoiser's input and its output (with its gradient kept) at every call."""

    def __init__(self, unet):
        self.inputs, self.outputs = [], []
        unet.register_forward_pre_hook(lambda _m, args: self.inputs.append(args[0].detach().clone()))
        unet.register_forward_hook(self.keep)

    def keep(self, _m, _args, out):
        out.sample.retain_grad()
        self.outputs.append(out.sample)


def test_hole_task_noises_and_scores_only_the_holes():
    pipe = tiny_pipeline(seed=1)  # pixel mode: a cell is a pixel
    model = pipe.model.train()
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    batch = hole_batch()
    spy = Spy(pipe.unet)
    model.training_loss(batch, scheduler, generator=seeded(), task_mix=(0, 0, 0, 1)).backward()
    x_t, grad = spy.inputs[0], spy.outputs[0].grad  # [B, 4, 32, 32]
    hole = batch["holes"].bool().expand(-1, 3, -1, -1)  # [B, 3, 32, 32]
    x0_rgb, x0_depth = batch["rgb"], batch["depth"]
    # the input: RGB clean outside the holes and noised inside, depth clean everywhere
    assert torch.equal(x_t[:, :3][~hole], x0_rgb[~hole]) and not torch.equal(x_t[:, :3][hole], x0_rgb[hole])
    assert torch.equal(x_t[:, 3:], x0_depth)
    # the loss: only the noised cells have a gradient
    assert grad[:, :3][~hole].abs().max() == 0 and grad[:, 3:].abs().max() == 0
    assert (grad[:, :3][hole] != 0).float().mean() > 0.99


def test_latent_hole_cells_follow_the_pipelines_rule():
    pipe = tiny_pipeline(latent=True, seed=1)
    model, f = pipe.model.train(), pipe.model.scale_factor
    batch = hole_batch(bsz=2)
    spy = Spy(pipe.unet)
    model.training_loss(batch, DDPMScheduler.from_config(pipe.scheduler.config), generator=seeded(),
                        task_mix=(0, 0, 0, 1)).backward()
    x0 = model.encode(batch["rgb"], batch["depth"])
    c = model.rgb_channels
    hole = torch.nn.functional.max_pool2d(batch["holes"], f).bool()  # any hole pixel makes its cell a hole
    assert hole[1, 0, 26 // f, 5 // f] and not hole[0, 0, 26 // f, 5 // f]
    same = (spy.inputs[0] == x0).all(dim=1, keepdim=True)  # [B, 1, h, w]: every channel clean
    assert torch.equal(same, ~hole)
    assert torch.equal(spy.inputs[0][:, c:], x0[:, c:])  # depth clean everywhere
    grad = spy.outputs[0].grad
    assert grad[:, :c][~hole.expand(-1, c, -1, -1)].abs().max() == 0 and grad[:, c:].abs().max() == 0


def test_no_hole_no_loss_and_three_weights_mean_no_hole_task():
    pipe = tiny_pipeline(seed=1)
    model = pipe.model.train()
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    batch = hole_batch()
    batch["holes"].zero_()  # the RGB known everywhere: nothing to score
    loss = model.training_loss(batch, scheduler, generator=seeded(), task_mix=(0, 0, 0, 1))
    loss.backward()
    assert loss.item() == 0 and pipe.unet.conv_out.weight.grad.abs().max() == 0
    # a 3-weight mix is the 4-weight mix with no hole task, sample for sample; it needs no holes
    del batch["holes"]
    three = model.training_loss(batch, scheduler, generator=seeded(), task_mix=(0.3, 0.5, 0.2))
    four = model.training_loss(batch, scheduler, generator=seeded(), task_mix=(0.3, 0.5, 0.2, 0.0))
    assert three.item() > 0 and torch.equal(three, four)
    with pytest.raises(ValueError, match="holes"):
        model.training_loss(batch, scheduler, generator=seeded(), task_mix=(0.3, 0.5, 0.2, 0.1))


# --- sampling a model trained on the hole task -----------------------------------------------------------------


@pytest.mark.parametrize("clean_partial", [False, True])
def test_a_partly_known_rgb_is_given_clean_if_so_trained(clean_partial, tmp_path):
    pipe = tiny_pipeline()
    pipe.register_to_config(clean_known=True, clean_partial=clean_partial)
    pipe.save_pretrained(tmp_path)
    pipe = load_pipeline(tmp_path)
    assert pipe.config.clean_partial is clean_partial and pipe.holds_clean(False) is clean_partial
    image = random_image(seed=6)
    rgb = pipe._image_tensor(image)
    known = torch.ones(1, 1, 32, 32)
    known[..., 8:18, 10:22] = 0
    seen = []
    pipe.unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, :3].clone()))
    pipe._sample(pipe.encode_reference(image), 1, 3, 1.0, seeded(), rgb=rgb, rgb_known=known)
    outside = known[0, 0].bool()
    assert len(seen) == 3
    assert [torch.equal(x[..., outside], rgb[..., outside]) for x in seen] == [clean_partial] * 3
    assert not any(torch.equal(x[..., ~outside], rgb[..., ~outside]) for x in seen)  # the hole is sampled


def test_pipelines_saved_before_the_hole_task_re_noise_partial_parts(pixel_pipe, tmp_path):
    import json

    pixel_pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    del index["clean_partial"]  # as in every pipeline saved before it, the embedded default's too
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    pipe = load_pipeline(tmp_path)
    assert pipe.config.clean_partial is False and pipe.holds_clean(False) is False


# --- the bank of real holes -------------------------------------------------------------------------------------


def run_cli(*argv):
    parser = argparse.ArgumentParser(prog="python -m portrait")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    args.func(args)


def test_the_bank_command_renders_real_holes_at_the_data_resolution(tmp_path, capsys):
    from portrait.data.synthetic import SyntheticSpec, write_dataset

    data = tmp_path / "data"
    write_dataset(data, SyntheticSpec(identities=2, views=2, size=32, seed=0, test_fraction=0.0))
    run_cli("holes", "--data", str(data), "--out", str(data / "holes.npz"), "--count", "3", "--per-sample", "2")
    assert "wrote 3 hole masks of 32x32" in capsys.readouterr().out
    bank = read_hole_bank(data / "holes.npz")
    assert bank.holes.shape == (3, 32, 32) and bank.holes.dtype == bool
    assert all(m.any() and not m.all() for m in bank.holes)
    assert bank.controls.shape == (3, 5) and np.abs(bank.controls[:, 0]).max() <= 30
    assert {i.split("_")[0] for i in bank.ids} <= {"00000", "00001"}


def test_bad_banks_are_refused_with_a_message(tmp_path):
    with pytest.raises(PortraitError, match="does not exist"):
        read_hole_bank(tmp_path / "missing.npz")
    np.savez(tmp_path / "flat.npz", holes=np.zeros((32, 32), bool))
    with pytest.raises(PortraitError, match=r"\[N, R, R\]"):
        read_hole_bank(tmp_path / "flat.npz")
    np.savez(tmp_path / "other.npz", masks=np.zeros((2, 32, 32), bool))
    with pytest.raises(PortraitError, match="holes"):
        read_hole_bank(tmp_path / "other.npz")
    bank = HoleBank(np.ones((2, 16, 16), bool), np.array(["a", "b"]), np.zeros((2, 5), np.float32))
    assert np.array_equal(read_hole_bank(bank.save(tmp_path / "ok.npz")).holes, bank.holes)
