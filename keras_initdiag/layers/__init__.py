"""Keras layers: `Whitening`, input standardization and decorrelation.

Example:
```python
import keras_initdiag

layer = keras_initdiag.layers.Whitening(mode="zca")
```
"""

from keras_initdiag.layers import moments as moments
from keras_initdiag.layers.whitening import Whitening as Whitening
