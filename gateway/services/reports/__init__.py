"""Push reports over e-mail, FTP(S) and HTTP(S) (SPEC §4, docs/reports.md).

The service is ``mbusgw.gateway.services.reports.service.ReportService``. This package module
imports nothing, so that the settings can use the catalog and the checks without a cycle.
"""
