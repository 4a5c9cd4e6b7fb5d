"""A small app for the stress run: probe tasks, a slowed-down e-mail receiver, event records."""
