"""What is specific to the Consul agent: how its DNS interface is asked (transport: EDNS,
silent-trim detection, TCP), whether it answers (ready), and the watch of its HTTP API: which
service a name is (names), what DNS can show of a service (view), where the API is and one
GET (http), and the blocking queries and what they vouch for (watch). Imports dns and
upstream."""
