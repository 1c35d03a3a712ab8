"""See DESIGN.md section 1."""
