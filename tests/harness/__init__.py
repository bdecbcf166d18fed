"""The test topology of real servers (see docs/testing.md), used through tests/conftest.py.

ports     free_port(): a loopback port free for UDP and TCP
procs     start/stop by PID, wait_for_dns() readiness with a deadline, launch() with bind retry
upstream  unbound serving the example.test. zone (constants here), dnsmasq zone and forwarder
consuldns `consuldns serve` as a subprocess
catalogs  catalogs for the Consul double (tests/consul_double)
nginx     nginx with a generated config, HTTP backends on 127.0.0.x
netns     network namespaces: servers on 127.0.0.1:53, getent through a bind-mounted resolv.conf
topology  the whole topology inside one namespace
"""
