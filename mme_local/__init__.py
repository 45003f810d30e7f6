"""mme-local: a local SageMaker GPU multi-model endpoint on a real Triton server."""

__version__ = "0.1.0"
