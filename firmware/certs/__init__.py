"""Certificate service: Edge CA, workload CA, module certificates, trust bundles and renewal."""
