"""Several nodes sharing one database (docs/cluster.md): each node's life, and the jobs
one node does for a dead one."""
