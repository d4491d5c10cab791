"""ExplanationValidator: gate deployment on explanation checks."""
