"""One router per audience: ``tenants`` (public), ``ops`` (health, readiness, metrics); ``fleet`` (staff) to come."""
