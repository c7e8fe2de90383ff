"""Reading and writing pixels, nothing else."""
