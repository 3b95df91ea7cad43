"""Celery lifecycle lab: real workers, real brokers, real signals.

The package is split by concern; see DESIGN notes in README.md. Modules that
the noxfile and a half-built venv import (matrix, verdict, results) use only
the standard library.
"""

__version__ = "0.1.0"
