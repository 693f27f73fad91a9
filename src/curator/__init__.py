"""curator: curate code pretraining data with learned classifiers."""

__version__ = "0.1.0"
