"""Weight initializers: the classic catalogue and an activation-aware chooser.

`SmallRandom` is the historical baseline. `Xavier`, `He` and `LeCun` are the
variance-scaling families; they delegate the sampling to
`keras.initializers.VarianceScaling` and `keras.initializers.Orthogonal`.
`Orthogonal` and `DeltaOrthogonal` give (semi-)orthogonal kernels.

`gain`, `for_activation`, `activation_name`, `initializer_family` and
`recommended_families` turn the rule of thumb "He for ReLU, Xavier for tanh,
LeCun for SELU, a measured gain otherwise" into code, from one table, so the
diagnostics flag a mismatch by the same rule that `for_activation` applies.

Every class is registered with Keras at import time under the package name
`keras_initdiag`, so `"keras_initdiag>He"` works as a layer argument and
`.keras` files load with `safe_mode=True`.

Layout: `small_random` (SmallRandom), `variance` (Xavier, He, LeCun),
`orthogonal` (Orthogonal, DeltaOrthogonal, centre_tap), `activations` (the
activation rule), `families` (initializer_family) and `_common` (argument
checks, seeding, registration). Import the names from here.
"""

from .activations import activation_name as activation_name
from .activations import for_activation as for_activation
from .activations import gain as gain
from .activations import gaussian_moments as gaussian_moments
from .activations import recommended_families as recommended_families
from .families import SMALL_STDDEV as SMALL_STDDEV
from .families import initializer_family as initializer_family
from .orthogonal import DeltaOrthogonal as DeltaOrthogonal
from .orthogonal import Orthogonal as Orthogonal
from .orthogonal import centre_tap as centre_tap
from .small_random import SmallRandom as SmallRandom
from .variance import He as He
from .variance import LeCun as LeCun
from .variance import Xavier as Xavier
