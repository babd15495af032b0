"""Where the model fails: weak-slice discovery, training-data bias and proxies."""
