"""The test library every Python suite under tests/ shares (e2e, chart, ops, faults, image,
integration). Each suite's conftest.py puts tests/ on sys.path (bgtest.path) and imports from here.

  ports         free loopback ports below the ephemeral range, and whether a port can be bound
  wait          wait_until: the one polling loop
  metrics       Prometheus text exposition (prometheus-client's parser) and scraping
  kube          the API server: the official `kubernetes` client from a kubeconfig, and a raw
                REST client (requests, admin client certificate) for tests that need the wire
  procs         child processes with a log file; stopping them (TERM, then KILL); a loop thread
  server        a `backup-guard serve` process: its ports, certificates, /readyz and /metrics
  controlplane  the local control plane of tests/e2e/controlplane.sh (pids, pki, kube-apiserver)
"""
