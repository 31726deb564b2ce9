"""The sensor registry: what each device is, where it stands, whether it may report."""
