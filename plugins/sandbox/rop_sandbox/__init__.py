"""The sandbox provider of ROP Hub (API.md, "Sandbox provider: test numbers")."""
