"""Integration tests against real Kafka, a MongoDB-wire server and an S3 API."""
