"""Tests of the example applications in examples/."""
