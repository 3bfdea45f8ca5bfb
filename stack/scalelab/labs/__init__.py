"""Exercises and checks, one module per lab: ``from scalelab.labs import lab01``."""
