"""Errors the package raises for bad input. Every layer above (CLI, app, API) shows their message as is."""


class PortraitError(ValueError):
    """Base class: a problem with the user's input or setup, with a message meant for the user."""


class InvalidImageError(PortraitError):
    """The file is not a readable image (corrupt, truncated, not an image at all)."""


class ImageSizeError(PortraitError):
    """The image is too small or too large to process."""


class NoFaceError(PortraitError):
    """No face was found in the image."""


class ModelNotFoundError(PortraitError):
    """A model path or hub id could not be loaded (missing folder, not cached offline, no default)."""


class InvalidVideoError(PortraitError):
    """The file is not a readable video (corrupt, not a video at all, no frames)."""
