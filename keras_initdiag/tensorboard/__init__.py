"""TensorBoard I/O: the writer of diagnostic reports and the reader of events.

Everything that touches event files lives in this subpackage: `writer.py`
turns reports into summaries, `events.py` reads them back with TensorBoard's
own record loader. The public names are re-exported here.

Example:
```python
from keras_initdiag.tensorboard import find_runs, read_reports

for run in find_runs("logs"):
    for report in read_reports(run):
        print(report.table())
```
"""

from keras_initdiag.tensorboard.events import DEPTH_PROFILE_TAG as DEPTH_PROFILE_TAG
from keras_initdiag.tensorboard.events import FLAGS_TAG as FLAGS_TAG
from keras_initdiag.tensorboard.events import LAYOUT_CATEGORY as LAYOUT_CATEGORY
from keras_initdiag.tensorboard.events import LOSS_TAG as LOSS_TAG
from keras_initdiag.tensorboard.events import REPORT_TAG as REPORT_TAG
from keras_initdiag.tensorboard.events import TRAIN_GRADIENT_TAG as TRAIN_GRADIENT_TAG
from keras_initdiag.tensorboard.events import UPDATE_RATIO_TAG as UPDATE_RATIO_TAG
from keras_initdiag.tensorboard.events import ReadProblem as ReadProblem
from keras_initdiag.tensorboard.events import find_runs as find_runs
from keras_initdiag.tensorboard.events import read_reports as read_reports
from keras_initdiag.tensorboard.writer import DiagnosticsWriter as DiagnosticsWriter
from keras_initdiag.tensorboard.writer import escape_markdown as escape_markdown
from keras_initdiag.tensorboard.writer import flags_markdown as flags_markdown
