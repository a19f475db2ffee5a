"""dptrain: data-parallel training of convolutional image classifiers over MPI."""
__version__ = "0.1.0"
