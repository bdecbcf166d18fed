"""nginx resolves its backend through the configured resolver and proxies to it."""

from __future__ import annotations

import pytest

from tests.harness.nginx import NginxSettings, nginx_config, supports_upstream_resolve

pytestmark = pytest.mark.nginx


def test_proxies_to_the_backend_the_resolver_names(dnsmasq_server, backends, nginx_server):
    pool = backends(count=2, first=2)
    resolver = dnsmasq_server(extra_args=("--host-record=web.service.consul,127.0.0.3",))
    proxy = nginx_server(resolver, backend_port=pool.port)
    status, body, headers = proxy.get()
    assert (status, body) == (200, "127.0.0.3")
    assert headers["x-upstream"] == f"127.0.0.3:{pool.port}"
    assert pool.hits == {"127.0.0.3": 1}


def test_unresolvable_name_is_a_502(dnsmasq_server, backends, nginx_server):
    pool = backends(count=1)
    resolver = dnsmasq_server()
    proxy = nginx_server(resolver, backend_port=pool.port, name="nx.example.test")
    status, _, _ = proxy.get()
    assert status == 502
    assert "could not be resolved" in proxy.error_log()
    assert not pool.hits


def test_config_uses_a_variable_and_the_resolver(tmp_path):
    text = nginx_config(tmp_path, "127.0.0.1", 1, NginxSettings(resolver="127.0.0.1:5300"))
    assert "resolver 127.0.0.1:5300 valid=1s ipv6=off;" in text
    assert "set $backend web.service.consul;" in text
    assert "proxy_pass http://$backend:8080;" in text


def test_upstream_resolve_form_only_where_supported(tmp_path):
    settings = NginxSettings(resolver="127.0.0.1:5300", upstream_resolve=True)
    text = nginx_config(tmp_path, "127.0.0.1", 1, settings)
    assert "server web.service.consul:8080 resolve;" in text
    if not supports_upstream_resolve():
        from tests.harness.nginx import start_nginx

        with pytest.raises(RuntimeError, match="1.27.3"):
            start_nginx(tmp_path / "n", settings)
