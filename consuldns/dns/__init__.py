"""Pure DNS bytes, no I/O: read queries and replies (wire), render replies once into templates
(template), shape them for each client (shape) and synthesise the answers consuldns gives on
its own (synth). Imports nothing from the rest of consuldns but errors."""
