"""Services: what the API asks of the server, one method per operation (jobs.py, processes.py)."""
