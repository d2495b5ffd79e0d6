"""Container runtime: Docker Engine client, module specs, supervision and image garbage collection."""
