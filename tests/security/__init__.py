"""Security: authorization matrix, secrets, command lines (issue 21)."""
