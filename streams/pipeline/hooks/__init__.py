"""What follows each new event as it is folded into the session features (``streams.pipeline.fold``)."""
