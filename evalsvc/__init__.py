"""evalsvc: EmpathyEval as a service for empathetic spoken dialogue."""

__version__ = "0.1.0"
