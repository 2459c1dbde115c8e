"""Integration services that run under the supervisor (Modbus TCP, ...)."""
