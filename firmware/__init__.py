"""edgekeeper: the security daemon and container supervisor for Linux IoT gateways."""

__version__ = "0.1.0"
