"""HTTP/1.1 over unix sockets and TCP (TLS): one client, and the server's sans-IO request reader."""
