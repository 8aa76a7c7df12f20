"""Training: config dataclasses (``config``) and the accelerate loop (``train``). Inference never imports this."""
