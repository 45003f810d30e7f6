"""Promote model.tar.gz artifacts to a real SageMaker GPU multi-model endpoint, and remove it.

Nothing here is imported by the local emulator; the SageMaker SDK is imported only when an image
URI is resolved (`pip install mme-local[cloud]`).
"""
