"""The shipped default's depth quality, pinned: on a small slice of the held-out synthetic faces, with the app's
settings and the model's own head mask, its depth error stays below the mean-face baseline by the margin its
model card claims, less the noise of a small slice (slow: renders the slice and runs the real model)."""

import pytest

from portrait import evaluation
from portrait.data.synthetic import SyntheticSpec, write_dataset
from portrait.studio import DEFAULT_PRIOR_STRENGTH, DEFAULT_PRIOR_WEIGHT

CLAIMED = 0.29  # the model card: 29 % below the mean face with its own mask (64 samples, ensemble 4, 20 steps)
NOISE = 0.07  # what 8 samples, ensemble 1 and 10 steps lose of it: 24.1 % and 23.5 % on the first two slices of 8


@pytest.mark.slow
def test_the_default_model_beats_the_mean_face_by_its_claimed_margin(tmp_path):
    # the training data's spec (seed 0, 20 % of the source faces held out), fewer identities: the same held-out faces
    write_dataset(tmp_path / "data", SyntheticSpec(identities=40, views=4, size=128, seed=0, test_fraction=0.2))
    summary = evaluation.evaluate(
        None, tmp_path / "data", tmp_path / "eval", limit=8, steps=10, ensemble=1,
        prior_strengths=(DEFAULT_PRIOR_STRENGTH,), prior_weights=(DEFAULT_PRIOR_WEIGHT,), joint_samples=0, hole_samples=0,
        timing_steps=1,
    )
    depth = summary["depth"]
    app = depth[f"model + mesh prior {DEFAULT_PRIOR_STRENGTH:g} + blend {DEFAULT_PRIOR_WEIGHT:g}"]
    mean_face = depth["mean face"]
    assert app["n"] == mean_face["n"] == 8
    assert app["rmse"] <= (1 - CLAIMED + NOISE) * mean_face["rmse"], (app["rmse"], mean_face["rmse"])
    assert app["iou"] >= 0.85 and app["coverage"] >= 0.85  # the model's own mask finds the head
