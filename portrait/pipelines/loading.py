"""``load_pipeline``: the embedded default, a local folder or a hub id, always offline-safe."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers.utils import logging

from ..errors import ModelNotFoundError
from .pipeline_portrait import PortraitPipeline

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "weights" / "default"


def load_pipeline(
    path_or_hub_id: str | os.PathLike | None = None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> PortraitPipeline:
    """Load a :class:`PortraitPipeline`. ``None`` = the embedded default model shipped in the package.

    A local folder is loaded as is; anything else is taken as a hub id and loaded from the local cache
    (with ``HF_HUB_OFFLINE=1`` nothing is downloaded). Raises :class:`ModelNotFoundError` with the path or
    id in its message when nothing can be loaded.
    """
    if path_or_hub_id is None:
        if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
            raise ModelNotFoundError(
                f"no default model is installed (expected it in {DEFAULT_MODEL_DIR}); "
                "pass a model folder or hub id instead"
            )
        path_or_hub_id = DEFAULT_MODEL_DIR
    source = str(path_or_hub_id)
    local = Path(source).expanduser()
    # a hub id is "name" or "org/name"; anything else (or anything that exists) is a local folder
    looks_local = local.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_local and not (local / "model_index.json").is_file():
        what = "does not exist" if not local.exists() else "has no model_index.json"
        raise ModelNotFoundError(f"model folder {source!r} {what}")
    logging.disable_progress_bar()  # loading is quick; a bar on stderr only clutters the CLI and logs
    try:
        pipe = PortraitPipeline.from_pretrained(str(local) if looks_local else source, dtype=dtype)
    except (OSError, ValueError) as err:
        if looks_local:
            raise ModelNotFoundError(f"could not load the model in {source!r}: {err}") from err
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = "it is not in the local cache and HF_HUB_OFFLINE is set" if offline else "it could not be fetched"
        raise ModelNotFoundError(f"could not load model {source!r} from the hub: {hint}") from err
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
