"""Exceptions raised by convops."""

from __future__ import annotations


class UnsupportedError(ValueError):
    """A forced ``backend=``/``algorithm=`` cannot run the problem.

    The message lists every reason each candidate gave.  It is a ValueError so
    that callers treating bad arguments generically still catch it.
    """


class ValidationError(AssertionError):
    """Validation mode found a result outside tolerance of the NumPy reference.

    Attributes: ``problem`` (the ConvProblem), ``implementation`` (its name),
    ``max_error`` (max |result - reference| / scale) and ``tolerance``.
    """

    def __init__(self, message, *, problem=None, implementation=None, max_error=None, tolerance=None):
        super().__init__(message)
        self.problem = problem
        self.implementation = implementation
        self.max_error = max_error
        self.tolerance = tolerance
