# consuldns in a container: slim Python, installed with pip, running as an unprivileged user.
#
#   docker build -t consuldns .
#   docker run -d --name consuldns -p 53:53/udp -p 53:53/tcp consuldns \
#       serve --consul 10.0.0.5:8600 --upstream 10.0.0.2
#
# The listen address is CONSULDNS_LISTEN (0.0.0.0:53), which the HEALTHCHECK reads too: set
# it, not --listen, so that the check asks the port consuldns serves (on 127.0.0.1).
# Port 53 without root: Docker (>= 20.10) sets net.ipv4.ip_unprivileged_port_start=0 in a
# container's own network namespace. With --network host that does not apply: listen on a
# port >= 1024 there,
#   docker run -d --network host -e CONSULDNS_LISTEN=127.0.0.1:5353 consuldns \
#       serve --consul 127.0.0.1:8600 --upstream 10.0.0.2
# or keep port 53 and run with --user root (consuldns binds, then drops to nobody).
# Inside a container 127.0.0.1:8600 is not the host's Consul agent: pass --consul (and
# --consul-http HOST:8500 for the watch, or --consul-http off), and pass --upstream too
# (Docker's resolver 127.0.0.11 is skipped as a loop when listening on 0.0.0.0:53).

FROM python:3.12-slim AS build
# A compiler builds the UDP packet accelerator (consuldns/_packetio.c) into the wheel; without
# it the wheel would hold the pure-Python loop only (`consuldns --version` says which runs).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY consuldns ./consuldns
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
RUN useradd --system --no-create-home --shell /usr/sbin/nologin consuldns
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/consuldns.toml /etc/consuldns/consuldns.toml
ENV CONSULDNS_CONFIG=/etc/consuldns/consuldns.toml \
    CONSULDNS_LISTEN=0.0.0.0:53 \
    PYTHONUNBUFFERED=1
USER consuldns
EXPOSE 53/udp 53/tcp

# Healthy while consuldns answers DNS at all: `consuldns query` exits 0 (an answer) or
# 1 (NXDOMAIN, SERVFAIL, ...: still a reply); only 3 (no reply) fails the check. consuldns
# answers ANY itself (RFC 8482), so the check never waits on the agent or the upstreams.
# It asks 127.0.0.1 on the port of CONSULDNS_LISTEN (an IPv4 address, or 0.0.0.0).
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
    CMD ["sh", "-c", "consuldns query healthcheck.invalid ANY --server \"127.0.0.1:${CONSULDNS_LISTEN##*:}\" --timeout 3 >/dev/null; [ $? -le 1 ]"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["consuldns"]
CMD ["serve"]
