"""Project-specific checkov checks for the Bicep templates (loaded with --external-checks-dir)."""
