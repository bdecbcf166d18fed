"""Asking upstream servers: the exchange with one server (transport: UDP, TCP, and how a kind
of server is asked), a group of servers with order, deadline shares and failover (group), and
the health of servers (health). Imports dns, never serve."""
