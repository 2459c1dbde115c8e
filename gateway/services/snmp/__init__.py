"""The SNMP v2c agent (``service``), its MIB (``MBUSGW-MIB.txt``, ``objects``) and its
notifications (``notify``)."""
