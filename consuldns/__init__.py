"""consuldns: a caching DNS forwarder for hosts that run a Consul agent."""

__version__ = "0.2.0"
