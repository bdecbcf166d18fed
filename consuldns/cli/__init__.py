"""The `consuldns` command: options (main), `query` (query), `query --explain` (explain) and
the admin listener's client (adminclient)."""
