"""`wiretide replay`: send stored calls again at a target and show what changed."""
