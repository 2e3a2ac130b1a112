"""Data: 2D toy distributions, user arrays, MNIST."""
