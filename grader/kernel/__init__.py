"""What runs in (agent) or beside (checker) a grading kernel to run the hidden checks."""
