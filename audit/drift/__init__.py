"""Data and prediction drift between a reference and a current data set."""
