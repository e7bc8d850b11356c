"""Demos that teach the FCN lesson by running it."""
