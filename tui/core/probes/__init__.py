"""Protocol checks against real servers. Each returns a ProbeResult and never raises."""
