"""Developer tools run from a checkout: the local demo (``make run``) and its workload."""
