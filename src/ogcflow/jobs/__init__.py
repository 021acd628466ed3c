"""Jobs: running a job and recording it (execution), its outputs (results), its status document, callbacks."""
