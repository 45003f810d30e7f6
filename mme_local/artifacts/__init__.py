"""model.tar.gz artifacts: checking them the way SageMaker's Triton reads them."""
