"""The event contract the dashboard reads: plugin name, tags and report metadata.

Like TensorBoard's own `plugins/*/metadata.py`, this module is shared by the
writer (`keras_initdiag.tensorboard.writer`) and the plugin. It imports only
the protobufs TensorBoard ships, so TensorBoard can load the plugin without
TensorFlow or Keras.
"""

from __future__ import annotations

import json

from tensorboard.compat.proto import summary_pb2

#: The plugin's name: its URL prefix (`/data/plugin/keras_initdiag/`), the
#: `--samples_per_plugin` key and the `plugin_name` of the report records.
PLUGIN_NAME = "keras_initdiag"
#: The TensorBoard plugin that owns the `<stat>/<node>` scalars.
SCALARS_PLUGIN_NAME = "scalars"
#: The plugin that owned the report records before they had their own
#: metadata (older logs), and that renders the `flags` tables.
TEXT_PLUGIN_NAME = "text"

#: Tag of the JSON report record written at every diagnosis.
REPORT_TAG = "initdiag/report_json"
#: Tag of the probe-batch loss scalar (not a per-node statistic).
LOSS_TAG = "loss/probe"
#: Tag of every training step's loss, from the real train step.
TRAIN_LOSS_TAG = "loss/train"
#: The loss scalars: neither is a per-node statistic.
LOSS_TAGS = (LOSS_TAG, TRAIN_LOSS_TAG)
#: Prefix of the per-batch gradient norms taken from the real train step.
TRAIN_GRADIENT_TAG = "train_gradient_norm"
#: Prefixes of the other per-step statistics of the real train step: each
#: layer's main weight norm after the update, its relative update and the
#: norm of its update.
TRAIN_WEIGHT_TAG = "train_weight_norm"
TRAIN_UPDATE_TAG = "train_update_ratio"
TRAIN_UPDATE_NORM_TAG = "train_update_norm"
#: Every per-layer series of the train step (not statistics of a
#: diagnosis), in the order of `keras_initdiag`'s `train_grads.COLUMNS`.
TRAIN_SERIES_TAGS = (
    TRAIN_GRADIENT_TAG,
    TRAIN_WEIGHT_TAG,
    TRAIN_UPDATE_TAG,
    TRAIN_UPDATE_NORM_TAG,
)

# Version of the content of the report records' plugin metadata.
_METADATA_VERSION = 1


def create_report_metadata() -> summary_pb2.SummaryMetadata:
    """The `SummaryMetadata` of a report record.

    It names this plugin (so TensorBoard's Text tab leaves the record alone)
    and declares a tensor time series (so both the Python loader and the Rust
    data server keep it; the Rust server drops series of unknown class).

    Returns:
        A `summary_pb2.SummaryMetadata` proto.

    Example:
    >>> metadata = tensorboard_plugin_initdiag.metadata.create_report_metadata()
    >>> metadata.plugin_data.plugin_name
    'keras_initdiag'
    """
    content = json.dumps({"version": _METADATA_VERSION}).encode("utf-8")
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=content
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )


def split_tag(tag: str) -> tuple[str, str] | None:
    """Split a `<stat>/<node>` tag at its first `/`.

    Node names may themselves contain `/` (layers of a nested model), `@`
    (a shared layer's second call) or `#` (extra outputs).

    Args:
        tag: A scalar tag, e.g. `"activation_variance/outer/inner@2"`.

    Returns:
        `(stat, node)`, or `None` when either part is empty.

    Example:
    >>> split_tag("activation_variance/outer/dense@2")
    ('activation_variance', 'outer/dense@2')
    """
    stat, _, node = tag.partition("/")
    if not stat or not node:
        return None
    return stat, node
