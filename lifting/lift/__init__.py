"""The lifting core: from a 2D object (mask or box) plus depth to a gravity-aligned metric 3D box."""
from lifting.lift.config import REASONS, LiftConfig
from lifting.lift.core import LiftInputError, lift_image

__all__ = ["LiftConfig", "LiftInputError", "REASONS", "lift_image"]
