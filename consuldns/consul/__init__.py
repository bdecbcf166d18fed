"""What is specific to the Consul agent: how its DNS interface is asked (transport: EDNS,
silent-trim detection, TCP) and whether it answers (ready). Imports dns and upstream."""
