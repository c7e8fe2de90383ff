"""How models are learned: the run-directory contract, strategy and precision, the trainers."""
