"""Shared fixtures: tiny models built in the test itself (CPU, offline, seconds)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import pytest  # noqa: E402

TINY = dict(
    resolution=32, block_out_channels=(32, 64), down_attention=(False, True), cross_attention_dim=32,
    attention_head_dim=8, vae_block_out_channels=(16, 32),
)


def tiny_pipeline(latent: bool = False, seed: int = 0):
    from portrait.pipelines import ModelConfig, build_pipeline

    pipe = build_pipeline(ModelConfig(latent=latent, **TINY), seed=seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def pixel_pipe():
    return tiny_pipeline(latent=False)


@pytest.fixture(scope="session")
def latent_pipe():
    return tiny_pipeline(latent=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, pixel_pipe):
    path = tmp_path_factory.mktemp("tiny_model")
    pixel_pipe.save_pretrained(path)
    return path


def random_image(size: int = 32, seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def square_depth(size: int = 32) -> np.ndarray:
    """A tilted plane inside a centred square, NaN outside: a simple target depth."""
    depth = np.full((size, size), np.nan, np.float32)
    lo, hi = size // 4, 3 * size // 4
    depth[lo:hi, lo:hi] = np.linspace(0.0, 1.0, hi - lo, dtype=np.float32)[None, :]
    return depth
