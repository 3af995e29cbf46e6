"""Rendering of DR plans and DR test reports."""
