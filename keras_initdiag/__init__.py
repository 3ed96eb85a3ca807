"""keras_initdiag: initializers, input whitening and initialization diagnostics.

Importing the package registers every serializable class with Keras, so
`"keras_initdiag>He"` works in layer arguments and `.keras` files load with
`safe_mode=True` without any extra call.

Example:

```python
import keras
import keras_initdiag

layer = keras.layers.Dense(64, activation="relu", kernel_initializer="keras_initdiag>He")
```
"""

__version__ = "0.1.0"

# Initializers (issue: foundation).
from keras_initdiag import initializers as initializers
