"""The DLMS/COSEM server over TCP (docs/dlms.md): the meters' latest stored values as COSEM
Register objects, with the gateway's clock and identity objects, in one logical device.

``obis`` maps meters and EN 13757-3 quantities onto OBIS codes, ``objects`` answers an
attribute of a COSEM object, ``association`` is one client's association (AARQ, GET, RLRQ;
sans-I/O), ``service`` the TCP server with the wrapper."""
