"""The S3 side: where model.tar.gz objects live and how they are published."""
