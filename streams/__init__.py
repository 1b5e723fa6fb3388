"""The streaming worker: Kafka events in, fresh recommendations in Redis out."""
