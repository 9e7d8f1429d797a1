"""The check catalog, the rules, the audit run and its reports (text, JSON, SARIF)."""
