"""The operator's shell: read the cluster, call the pure core, apply, write status."""
