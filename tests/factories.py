"""Model factories loaded by tests through ``build_model("factories:<name>")``."""

from torch import nn

NOT_CALLABLE = 3


def tiny(num_classes=4):
    """A conv + linear model and its input shape."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, num_classes))
    return model, (3, 8, 8)


def tiny_bare():
    """A bare module without an input shape; takes no arguments."""
    return nn.Linear(5, 2)


def not_a_module():
    """Returns something that is not a model."""
    return "not a model"


def bad_shape():
    """Returns an input shape with a zero dimension."""
    return nn.Linear(5, 2), (5, 0)
