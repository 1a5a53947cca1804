"""Sandbox: the limits and isolation a grading kernel runs under."""
