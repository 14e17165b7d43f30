"""The sandbox provider of ROP Hub: test numbers choose each purchase's outcome (see ``plugin``)."""
