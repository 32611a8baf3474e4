"""The embedded local cloud: moto's AWS emulator, an embedded PostgreSQL with pgvector, and a
dispatcher that delivers S3 and EventBridge events to the three handlers in-process."""
