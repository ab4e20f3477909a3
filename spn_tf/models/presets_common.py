"""The one shape of a kind's presets: `preset(name, image_size) -> dict`."""

NAMES = ("tiny", "small", "paper")


def check_name(name):
    """Raises a `ValueError` naming the presets when `name` is not one of them."""
    if name not in NAMES:
        raise ValueError(f"unknown preset {name!r}; choose one of {NAMES}.")
