"""The SageMaker Runtime front door: HTTP and AWS shapes, nothing else."""
