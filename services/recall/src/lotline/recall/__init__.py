"""Lotline's recall service: owns the recalls (recall.recalls) and follows each one to its close."""
