"""Tests of the event model and the callback parser (``shared/``)."""
