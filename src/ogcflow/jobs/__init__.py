"""Job store and job state machine."""
