"""Pure rules below the job spec and the settings: where delivered photos go, which suggestions
become keywords, where the database lives by default."""
