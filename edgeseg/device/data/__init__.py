"""Datasets: built-in synthetic sets, real folder layouts, and the tf.data pipeline."""
