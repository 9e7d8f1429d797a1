"""Reading an installation: discovery, the model, compose files (include/extends) and .env files."""
