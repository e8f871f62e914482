"""Security: authorization matrix, secrets, command lines (docs/security.md)."""
