"""Lotline's catalog: owns the products (catalog.products) and announces every change of one."""
