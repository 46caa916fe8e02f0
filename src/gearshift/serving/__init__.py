"""The HTTP front end: the KServe V2 app, the data plane in front of the replica engine, the
control loop that applies decisions, metrics, and the server process."""
