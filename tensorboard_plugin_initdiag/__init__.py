"""The initdiag dashboard: a TensorBoard plugin for `keras_initdiag` logs.

It shows, for every run written by `keras_initdiag.InitDiagnostics`, a
layer x step heatmap of each statistic, the depth profile (signal propagation
plot) at any step and every flag. TensorBoard finds it through the
`tensorboard_plugins` entry point; `pip install keras_initdiag` installs it.

The package is separate from `keras_initdiag` so that loading it imports
neither TensorFlow nor Keras (see `plugin.py` for the design).
"""

from tensorboard_plugin_initdiag.loader import InitDiagLoader as InitDiagLoader
from tensorboard_plugin_initdiag.metadata import PLUGIN_NAME as PLUGIN_NAME
