"""The two ping-pong services, A and B, built from one app factory (see app.py)."""
