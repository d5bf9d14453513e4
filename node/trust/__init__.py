"""Trust: the authority, node certificates, join tokens (DESIGN.md section 3)."""
