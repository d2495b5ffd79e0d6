"""The management API's routes (IoT Edge's paths and shapes, and edgekeeper's own), one module per
subject; each offers `routes(...)` that the daemon's wiring registers once."""
