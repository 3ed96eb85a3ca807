"""The initdiag dashboard: a TensorBoard plugin for `keras_initdiag` logs.

The package is separate from `keras_initdiag` so that TensorBoard can load it
without importing TensorFlow or Keras.
"""

from tensorboard_plugin_initdiag.metadata import PLUGIN_NAME as PLUGIN_NAME
