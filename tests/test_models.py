"""Widening, the reference attention processor (parity with diffusers) and ReferenceNet."""

import copy

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from portrait.models import ReferenceNet, set_reference_processors, widen_unet


def sd_like_unet(in_channels: int = 4, seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=in_channels, block_out_channels=(32, 64),
        layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=32,
    ).eval()


def inputs(batch=2, channels=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, 8, 8, generator=g)
    t = torch.tensor([10, 500])[:batch]
    ctx = torch.randn(batch, 3, 32, generator=g)
    return x, t, ctx


def test_widened_conv_in_on_identical_halves_equals_original():
    unet = sd_like_unet()
    original = copy.deepcopy(unet.conv_in)
    widen_unet(unet)
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(unet.conv_in(torch.cat([x, x], dim=1)), original(x), rtol=1e-5, atol=1e-6)
    assert unet.conv_in.weight.shape[1] == 8 and unet.conv_out.weight.shape[0] == 8


def test_widened_conv_out_repeats_and_config_records_channels(tmp_path):
    unet = sd_like_unet()
    out_w = unet.conv_out.weight.detach().clone()
    widen_unet(unet)
    torch.testing.assert_close(unet.conv_out.weight[:4], out_w)
    torch.testing.assert_close(unet.conv_out.weight[4:], out_w)
    assert (unet.config.in_channels, unet.config.out_channels) == (8, 8)
    unet.save_pretrained(tmp_path)
    loaded = UNet2DConditionModel.from_pretrained(tmp_path)
    assert (loaded.config.in_channels, loaded.config.out_channels) == (8, 8)
    torch.testing.assert_close(loaded.conv_in.weight, unet.conv_in.weight)


def test_reference_processor_without_reference_equals_stock_diffusers_unet():
    stock = sd_like_unet()
    stock.set_attn_processor(AttnProcessor2_0())
    ours = copy.deepcopy(stock)
    set_reference_processors(ours)
    x, t, ctx = inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t, ctx).sample, stock(x, t, ctx).sample, rtol=1e-5, atol=1e-6)


def test_reference_changes_output_and_dropping_it_restores_the_stock_output():
    unet = sd_like_unet()
    set_reference_processors(unet)
    ref_net = ReferenceNet.from_unet(unet)
    x, t, ctx = inputs()
    with torch.no_grad():
        states = ref_net.reference_states(torch.randn(1, 4, 8, 8), ctx[:1])
        plain = unet(x, t, ctx).sample
        with_ref = unet(x, t, ctx, cross_attention_kwargs={"reference": states.reader()}).sample
        keep = torch.tensor([False, True])
        mixed = unet(x, t, ctx, cross_attention_kwargs={"reference": states.reader(keep)}).sample
    assert (with_ref - plain).abs().max() > 1e-3
    torch.testing.assert_close(mixed[0], plain[0], rtol=1e-4, atol=1e-5)  # dropped: as if no reference
    torch.testing.assert_close(mixed[1], with_ref[1], rtol=1e-4, atol=1e-5)
    # one state per self-attention layer, none for cross-attention
    assert states.states and all(".attn1." in name for name in states.states)


def test_reference_net_from_widened_unet_sees_rgb_like_the_original():
    base = sd_like_unet()
    ref_from_base = ReferenceNet.from_unet(base)
    widened = widen_unet(copy.deepcopy(base))
    ref_from_widened = ReferenceNet.from_unet(widened, in_channels=4)
    torch.testing.assert_close(ref_from_widened.conv_in.weight, ref_from_base.conv_in.weight)
    assert ref_from_widened.config.in_channels == 4


def test_missing_reference_layer_is_a_clear_error():
    unet = sd_like_unet()
    set_reference_processors(unet)
    from portrait.models import ReferenceState

    x, t, ctx = inputs()
    with pytest.raises(KeyError, match="attn1"):
        unet(x, t, ctx, cross_attention_kwargs={"reference": ReferenceState(states={})})
