"""The lab: an ipywidgets dashboard that steps training, grows the network and shows it.

    lab = genlab.Lab(trainer, data)   # data: a genlab Dataset, (X, y) arrays, or a DataFrame with label=
    lab                               # in Jupyter: buttons, sliders and live pictures

- controls: the widgets and their layout (a projector's: large type, panels that wrap)
- dashboard: Lab, their behaviour (steps, Run N in the background, growth, reset, redraws)
- pictures: the heatmap and the curves, figures kept and updated between redraws
- messages: growth events and "why nothing grew" in words
"""

from .controls import EMPTY
from .dashboard import Lab, as_dataset
from .messages import announce

__all__ = ["EMPTY", "Lab", "announce", "as_dataset"]
