"""Core of the city sensor network platform: what every part shares."""
