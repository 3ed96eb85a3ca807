"""keras_initdiag: initializers, input whitening and initialization diagnostics.

Importing the package registers every serializable class with Keras, so
`"keras_initdiag>He"` works in layer arguments and `.keras` files load with
`safe_mode=True` without any extra call.

Example:
```python
import keras
import keras_initdiag

layer = keras.layers.Dense(
    64, activation="relu", kernel_initializer="keras_initdiag>He"
)
```
"""

__version__ = "0.1.0"

from keras_initdiag import _startup

with _startup.quiet_start():
    # Initializers.
    from keras_initdiag import initializers as initializers
    from keras_initdiag.initializers import DeltaOrthogonal as DeltaOrthogonal
    from keras_initdiag.initializers import He as He
    from keras_initdiag.initializers import LeCun as LeCun
    from keras_initdiag.initializers import Orthogonal as Orthogonal
    from keras_initdiag.initializers import SmallRandom as SmallRandom
    from keras_initdiag.initializers import Xavier as Xavier
    from keras_initdiag.initializers import for_activation as for_activation
    from keras_initdiag.initializers import gain as gain

    # isort: split
    # Input normalization layer.
    from keras_initdiag import layers as layers
    from keras_initdiag.layers import Whitening as Whitening

    # isort: split
    # Diagnostics.
    from keras_initdiag import callbacks as callbacks
    from keras_initdiag.callbacks import FlagError as FlagError
    from keras_initdiag.callbacks import InitDiagnostics as InitDiagnostics
    from keras_initdiag.callbacks import (
        InitDiagnosticsWarning as InitDiagnosticsWarning,
    )
    from keras_initdiag.diagnostics.oneshot import diagnose as diagnose
    from keras_initdiag.diagnostics.report import DiagnosticReport as DiagnosticReport
    from keras_initdiag.diagnostics.report import Flag as Flag
    from keras_initdiag.diagnostics.rules import Thresholds as Thresholds

    # isort: split
    # LSUV, a data-dependent initialization.
    from keras_initdiag.lsuv import LSUVLayer as LSUVLayer
    from keras_initdiag.lsuv import LSUVResult as LSUVResult
    from keras_initdiag.lsuv import LSUVWarning as LSUVWarning
    from keras_initdiag.lsuv import lsuv as lsuv
