"""The serving pipeline of one process: listeners (udp, tcp, listeners), who may ask
(access), the query path (handler), coalescing (inflight), routing (router), the cache
(cache) and the counters (stats). Imports dns and upstream, never ops or cli."""
