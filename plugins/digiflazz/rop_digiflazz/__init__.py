"""Digiflazz provider plugin for ROP Hub, with a local simulator of its protocol."""
