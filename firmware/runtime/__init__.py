"""Container runtime: Docker Engine client, module specs, supervision, image garbage collection."""
