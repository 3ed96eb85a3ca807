"""The plugin's loader: keep every report record, then make the plugin."""

from __future__ import annotations

import logging

from tensorboard.plugins import base_plugin

from tensorboard_plugin_initdiag import metadata

logger = logging.getLogger("tensorboard_plugin_initdiag")


class InitDiagLoader(base_plugin.TBLoader):
    """Loads `InitDiagPlugin`; registered as a `tensorboard_plugins` entry point.

    `fix_flags` runs after TensorBoard parses its flags and before it starts a
    loader: it asks both loaders to keep every report record of this plugin
    (`--samples_per_plugin=keras_initdiag=0`, "all"), unless the user chose a
    value, so the flag list of a long run is complete. See `plugin.py` for why.

    Example:
    >>> from tensorboard import default, program
    >>> tb = program.TensorBoard(plugins=[*default.get_plugins()])
    """

    def fix_flags(self, flags):
        """Keep every report record unless `--samples_per_plugin` names ours."""
        hints = getattr(flags, "samples_per_plugin", None)
        if isinstance(hints, dict) and metadata.PLUGIN_NAME not in hints:
            hints[metadata.PLUGIN_NAME] = 0

    def load(self, context):
        """Make the plugin; `None` (not loaded) without a data provider."""
        if context.data_provider is None:
            logger.warning(
                "keras_initdiag dashboard not loaded: TensorBoard gave it no data "
                "provider (was --generic_data=false set?)."
            )
            return None
        from tensorboard_plugin_initdiag.plugin import InitDiagPlugin

        return InitDiagPlugin(context)
