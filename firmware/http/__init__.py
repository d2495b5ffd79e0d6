"""HTTP/1.1 over unix sockets and TCP (TLS): the one client, and the server's sans-IO request reader."""
