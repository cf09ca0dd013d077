"""The pure core: values in, values out; no I/O, no Azure, no clock reads."""
