"""The command-line terminal over TCP (docs/terminal.md): a line protocol usable with telnet
or netcat, and the command language autoconfiguration files are written in."""
