"""The serial registry: every serialized unit, its status, recall flag and history."""
