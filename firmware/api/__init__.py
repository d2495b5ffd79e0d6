"""Local APIs: HTTP+JSON over unix sockets (management and workload), sans-IO server core."""
