"""The benchmark's sections, one module each."""
