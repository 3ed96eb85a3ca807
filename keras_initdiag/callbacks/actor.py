"""What a flag does: warn, stop, raise or nothing; and what is printed."""

from __future__ import annotations

from keras_initdiag import _warn
from keras_initdiag.diagnostics.report import DiagnosticReport, Flag
from keras_initdiag.diagnostics.rules import is_advisory

ON_FLAG = ("warn", "stop", "raise", "ignore")


class InitDiagnosticsWarning(UserWarning):
    """A flag raised by `InitDiagnostics` (or a diagnostics failure).

    Example:
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", keras_initdiag.InitDiagnosticsWarning)
    ...     callback = keras_initdiag.InitDiagnostics(log_dir=None, verbose=0)
    ...     history = model.fit(x, y, callbacks=[callback], verbose=0)
    """


class FlagError(RuntimeError):
    """Raised by `InitDiagnostics(on_flag="raise")`; `flags` lists the causes.

    Args:
        flags: The non-advisory flags that stopped training.

    Example:
    >>> try:
    ...     callback = keras_initdiag.InitDiagnostics(log_dir=None, on_flag="raise")
    ...     history = model.fit(x, y, callbacks=[callback], verbose=0)
    ... except keras_initdiag.FlagError as error:
    ...     print([flag.kind for flag in error.flags])
    """

    def __init__(self, flags: list[Flag]):
        self.flags = list(flags)
        super().__init__("\n".join(str(flag) for flag in self.flags))


class Actor:
    """Acts on flags as the user asked, and prints what `verbose` asks.

    Args:
        on_flag: `"warn"` (once per kind and layer), `"stop"` (warn, then
            ask `fit` to stop), `"raise"` (`FlagError`) or `"ignore"`.
            Advisory flags only warn.
        verbose: 0 silent, 1 one line per diagnosis with new flags (and the
            first diagnosis), 2 the full table of every diagnosis.

    Example:
    >>> actor = Actor("stop", verbose=0)
    >>> actor.act(report)   # True: fit should stop
    """

    def __init__(self, on_flag: str = "warn", verbose: int = 1):
        self.on_flag = on_flag
        self.verbose = verbose
        self._warned: set = set()
        self._printed: set = set()
        self._reports = 0
        self._failure_warned = False

    def begin_fit(self) -> None:
        """A new `fit`: its first diagnostics failure warns again."""
        self._failure_warned = False

    def failed(self, step: int, error: Exception) -> None:
        """A diagnosis or a measurement failed: warn, once per `fit`."""
        if not self._failure_warned:
            self._failure_warned = True
            _warn.warn(
                f"InitDiagnostics failed at step {step} and will keep trying "
                f"quietly; training goes on. {type(error).__name__}: {error}",
                InitDiagnosticsWarning,
            )

    def reset(self) -> None:
        """Forget which flags were already warned about and printed."""
        self._warned.clear()
        self._printed.clear()
        self._reports = 0

    def start_over(self, model: str, run: str | None) -> None:
        """The callback moved to another model: its flags are news again."""
        self.reset()
        _warn.warn(
            f"InitDiagnostics moved to model {model!r}: it starts over from that "
            "model's current step"
            + (f", and its events go to {run!r}." if run else "."),
            InitDiagnosticsWarning,
        )

    def act(self, report: DiagnosticReport) -> bool:
        """Print, warn, and say whether training should stop.

        Raises:
            FlagError: With `on_flag="raise"` and a non-advisory flag.
        """
        self._print(report)
        return self.act_on(report.flags)

    def act_on(self, flags: list[Flag]) -> bool:
        """Warn about, stop for or raise on `flags` (see `act`)."""
        if self.on_flag == "ignore" or not flags:
            return False
        serious = [f for f in flags if not is_advisory(f) and not f.pending]
        if self.on_flag == "raise" and serious:
            raise FlagError(serious)
        for flag in serious:
            self.warn_once((flag.kind, flag.layer), str(flag))
        fresh = [
            f for f in flags if is_advisory(f) and (f.kind, f.layer) not in self._warned
        ]
        if fresh:
            self._warned |= {(f.kind, f.layer) for f in fresh}
            _warn.warn(
                f"{len(fresh)} advisory flag(s):\n" + "\n".join(str(f) for f in fresh),
                InitDiagnosticsWarning,
            )
        stop = self.on_flag == "stop" and bool(serious)
        if stop and self.verbose:
            print(
                f"InitDiagnostics: stopping training at step {serious[0].step} "
                '(on_flag="stop") because of:\n'
                + "\n".join(f"  {flag}" for flag in serious)
            )
        return stop

    def warn_once(self, key, message: str) -> None:
        """Warn with `message` unless `key` was warned about before."""
        if key not in self._warned:
            self._warned.add(key)
            _warn.warn(message, InitDiagnosticsWarning)

    def _print(self, report: DiagnosticReport) -> None:
        self._reports += 1
        if self.verbose == 2:
            print(report.table())
            return
        serious = sorted(
            {
                (f.kind + (" (pending)" if f.pending else ""), f.layer)
                for f in report.flags
                if not is_advisory(f)
            }
        )
        new = set(serious) - self._printed
        if report.verdict is not None and self.verbose:
            print(f"InitDiagnostics: {report.verdict}")
        if self.verbose == 1 and (new or self._reports == 1):
            self._printed |= new
            kinds = ", ".join(f"{kind} at {layer}" for kind, layer in serious)
            advisory = sum(is_advisory(f) for f in report.flags)
            line = f"InitDiagnostics step {report.step}: " + (kinds or "no problems")
            if advisory:
                line += f" ({advisory} advisory: see the warnings or TensorBoard)"
            print(line)
