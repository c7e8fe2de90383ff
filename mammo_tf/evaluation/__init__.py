"""What the models are worth: metrics, statistics and reports."""
