"""What `lsuv` reports: a record per layer, the run's result, its warning."""

from __future__ import annotations

import dataclasses


class LSUVWarning(UserWarning):
    """A layer's pre-activation variance did not reach 1 within `max_iter`.

    Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always", keras_initdiag.LSUVWarning)
    ...     result = keras_initdiag.lsuv(model, x, max_iter=1, verbose=0)
    >>> [str(w.message) for w in caught if w.category is keras_initdiag.LSUVWarning]
    """


@dataclasses.dataclass(frozen=True)
class LSUVLayer:
    """What `lsuv` did to one layer.

    Args:
        name: The layer's name.
        class_name: The layer's class name, e.g. `"Dense"`.
        iterations: How many rescales were applied (0 if the variance was
            already within `tol` of 1).
        variance_before: Pre-activation variance on `x` before the first
            rescale (after the orthonormal pre-initialization, with the
            earlier layers already fixed).
        variance_after: Pre-activation variance on `x` after the last rescale.
        scale: The total factor the kernel was multiplied by.
        converged: Whether `|variance_after - 1| < tol`.
        orthogonal: Whether the kernel was replaced by an orthonormal one first.

    Example:
    >>> result = keras_initdiag.lsuv(model, x, verbose=0)
    >>> first = result.layers[0]
    >>> first.name, first.iterations, round(first.variance_after, 1)
    """

    name: str
    class_name: str
    iterations: int
    variance_before: float
    variance_after: float
    scale: float
    converged: bool
    orthogonal: bool


@dataclasses.dataclass
class LSUVResult:
    """Per-layer record of one `lsuv` run.

    Args:
        layers: One `LSUVLayer` per rescaled layer, in forward order.
        skipped: `(layer name, reason)` for the layers left untouched.
        tol: The tolerance the run used.

    Example:
    >>> result = keras_initdiag.lsuv(model, x, verbose=0)
    >>> print(result.table())
    >>> result["dense_3"].variance_after
    1.0
    """

    layers: list[LSUVLayer]
    skipped: list[tuple[str, str]]
    tol: float

    @property
    def converged(self) -> bool:
        """Whether every rescaled layer reached variance 1 within `tol`."""
        return all(record.converged for record in self.layers)

    def __getitem__(self, name: str) -> LSUVLayer:
        for record in self.layers:
            if record.name == name:
                return record
        raise KeyError(
            f"No layer named {name!r} was rescaled. Rescaled layers: "
            f"{[record.name for record in self.layers]}"
        )

    def table(self) -> str:
        """Render the per-layer records and the skipped layers as text.

        Returns:
            A fixed-width table as one string, skipped layers listed below it.
        """
        width = max([len("layer")] + [len(r.name) for r in self.layers])
        header = (
            f"{'layer':<{width}}  {'class':<16} {'iters':>5} {'var_before':>11} "
            f"{'var_after':>11} {'scale':>10}  ortho  converged"
        )
        lines = [header, "-" * len(header)]
        for r in self.layers:
            lines.append(
                f"{r.name:<{width}}  {r.class_name:<16} {r.iterations:>5} "
                f"{r.variance_before:>11.4g} {r.variance_after:>11.4g} "
                f"{r.scale:>10.4g}  {'yes' if r.orthogonal else 'no':<5}  "
                f"{'yes' if r.converged else 'NO'}"
            )
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} layer(s):")
            lines += [f"  {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)
